//! Dispatch rounds against a real database, the clock held still by the test.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::TimeDelta;
use domain::clock::{Clock, ManualClock};
use scheduler::dispatch::{Dispatcher, Report};

use crate::world::{World, at};

const JOBS: &str = "test-email-jobs";

fn dispatcher(world: &World, clock: &Arc<ManualClock>, batch: usize) -> Dispatcher {
    let clock: Arc<dyn Clock> = clock.clone();
    Dispatcher::new(world.pool.clone(), clock, batch, JOBS.to_owned())
}

/// Runs rounds on every dispatcher at once until a whole pass claims nothing.
async fn drain(dispatchers: &[Dispatcher]) -> anyhow::Result<Report> {
    let mut total = Report::default();
    for _ in 0..1_000 {
        let rounds =
            futures::future::try_join_all(dispatchers.iter().map(|d| d.run_once())).await?;
        let mut claimed = 0;
        for r in rounds {
            claimed += r.claimed + r.retried;
            total.claimed += r.claimed;
            total.dispatched += r.dispatched;
            total.retried += r.retried;
            total.deferred += r.deferred;
            total.finished += r.finished;
        }
        if claimed == 0 {
            return Ok(total);
        }
    }
    anyhow::bail!("dispatch never ran dry")
}

#[tokio::test]
async fn three_replicas_send_exactly_the_days_capacity_and_move_the_rest() -> anyhow::Result<()> {
    let world = World::new(5, 30, &[(0, 0, 0), (3, 0, 0)]).await?;
    let now = at("2026-03-02T10:00:00Z")?;
    world.enroll(1_000, now - TimeDelta::minutes(5)).await?;
    let clock = Arc::new(ManualClock::new(now));
    let replicas: Vec<Dispatcher> = (0..3).map(|_| dispatcher(&world, &clock, 50)).collect();

    let report = drain(&replicas).await?;

    assert_eq!(report.dispatched, 150);
    assert_eq!(
        world.count("SELECT count(*) AS n FROM messages").await?,
        150
    );
    assert_eq!(
        world
            .count("SELECT count(DISTINCT enrollment_id) AS n FROM messages")
            .await?,
        150
    );
    assert_eq!(
        world.count("SELECT count(*) AS n FROM send_jobs").await?,
        150
    );
    assert_eq!(
        world
            .count("SELECT count(DISTINCT message_id) AS n FROM send_jobs")
            .await?,
        150
    );
    assert_eq!(world.count("SELECT count(*) AS n FROM outbox").await?, 0);
    let day = now.date_naive();
    for mailbox in &world.mailboxes {
        assert_eq!(
            world.reserved(*mailbox, day).await?,
            30,
            "mailbox {mailbox}"
        );
        assert_eq!(
            world
                .count(&format!(
                    "SELECT count(*) AS n FROM messages WHERE mailbox_id = '{mailbox}'"
                ))
                .await?,
            30
        );
    }
    // The other 850 wait for tomorrow's window opening; the 150 are in flight.
    let tomorrow_opening = at("2026-03-03T09:00:00Z")?;
    assert_eq!(
        world
            .count(&format!(
                "SELECT count(*) AS n FROM enrollments WHERE next_send_at = '{tomorrow_opening}'"
            ))
            .await?,
        850
    );
    assert_eq!(
        world
            .count("SELECT count(*) AS n FROM enrollments WHERE next_send_at IS NULL AND status = 'active'")
            .await?,
        150
    );

    // Tomorrow the next 150 go out, on the new day's units.
    clock.set(tomorrow_opening);
    let report = drain(&replicas).await?;
    assert_eq!(report.dispatched, 150);
    for mailbox in &world.mailboxes {
        assert_eq!(
            world
                .reserved(*mailbox, tomorrow_opening.date_naive())
                .await?,
            30
        );
    }
    Ok(())
}

#[tokio::test]
async fn first_steps_rotate_least_used_first_and_follow_ups_keep_their_mailbox()
-> anyhow::Result<()> {
    let world = World::new(3, 100, &[(0, 0, 0), (0, 1, 0)]).await?;
    let now = at("2026-03-02T10:00:00Z")?;
    let enrollments = world.enroll(9, now).await?;
    let clock = Arc::new(ManualClock::new(now));
    let one = dispatcher(&world, &clock, 100);

    assert_eq!(drain(std::slice::from_ref(&one)).await?.dispatched, 9);
    let mut per_mailbox: HashMap<uuid::Uuid, usize> = HashMap::new();
    let mut first_mailbox = HashMap::new();
    for id in &enrollments {
        let messages = world.messages_of(*id).await?;
        assert_eq!(messages.len(), 1);
        *per_mailbox.entry(messages[0].mailbox_id).or_default() += 1;
        first_mailbox.insert(*id, messages[0].mailbox_id);
    }
    assert_eq!(per_mailbox.len(), 3);
    assert!(per_mailbox.values().all(|n| *n == 3), "{per_mailbox:?}");

    // Make the first mailbox the busiest, then let every follow-up fall due: each still goes
    // from the mailbox of its first step.
    world
        .exec(&format!(
            "UPDATE mailbox_daily_usage SET reserved = 90 WHERE mailbox_id = '{}'",
            world.mailboxes[0]
        ))
        .await?;
    // What the `sent` of step 1 does (tested with the events consumer): next step, its time,
    // and the thread's mailbox from the first message.
    world
        .exec(
            "UPDATE enrollments e SET current_step = 2, next_send_at = '2026-03-02T10:30:00Z', \
                    mailbox_id = m.mailbox_id \
               FROM messages m WHERE m.enrollment_id = e.id",
        )
        .await?;
    clock.set(at("2026-03-02T11:00:00Z")?);
    assert_eq!(drain(std::slice::from_ref(&one)).await?.dispatched, 9);
    for id in &enrollments {
        let messages = world.messages_of(*id).await?;
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[1].step_order, 2);
        assert_eq!(messages[1].mailbox_id, first_mailbox[id]);
    }
    Ok(())
}

#[tokio::test]
async fn outside_the_window_the_step_waits_for_the_opening() -> anyhow::Result<()> {
    let world = World::new(1, 100, &[(0, 0, 0)]).await?;
    let now = at("2026-03-02T18:30:00Z")?;
    let enrollments = world.enroll(3, now - TimeDelta::hours(1)).await?;
    let clock = Arc::new(ManualClock::new(now));

    let report = drain(&[dispatcher(&world, &clock, 100)]).await?;

    assert_eq!(report.dispatched, 0);
    assert_eq!(report.deferred, 3);
    for id in enrollments {
        assert_eq!(
            world.enrollment(id).await?.next_send_at,
            Some(at("2026-03-03T09:00:00Z")?)
        );
    }
    assert_eq!(world.count("SELECT count(*) AS n FROM messages").await?, 0);
    Ok(())
}

#[tokio::test]
async fn suppressed_and_unsubscribed_contacts_are_stopped_not_sent() -> anyhow::Result<()> {
    let world = World::new(1, 100, &[(0, 0, 0)]).await?;
    let now = at("2026-03-02T10:00:00Z")?;
    let enrollments = world.enroll(4, now).await?;
    world
        .exec(&format!(
            "INSERT INTO suppressions (id, workspace_id, email, reason) \
             SELECT gen_random_uuid(), workspace_id, email, 'manual' FROM contacts \
              WHERE id = (SELECT contact_id FROM enrollments WHERE id = '{}')",
            enrollments[0]
        ))
        .await?;
    world
        .exec(&format!(
            "UPDATE contacts SET email = 'someone@blocked.test' \
              WHERE id = (SELECT contact_id FROM enrollments WHERE id = '{}')",
            enrollments[1]
        ))
        .await?;
    world
        .exec(
            "INSERT INTO suppressions (id, workspace_id, email, reason) \
             SELECT gen_random_uuid(), id, '@blocked.test', 'manual' FROM workspaces",
        )
        .await?;
    world
        .exec(&format!(
            "UPDATE contacts SET status = 'unsubscribed' \
              WHERE id = (SELECT contact_id FROM enrollments WHERE id = '{}')",
            enrollments[2]
        ))
        .await?;
    let clock = Arc::new(ManualClock::new(now));

    let report = drain(&[dispatcher(&world, &clock, 100)]).await?;

    let statuses: Vec<String> =
        futures::future::try_join_all(enrollments.iter().map(|id| world.enrollment(*id)))
            .await?
            .into_iter()
            .map(|e| e.status)
            .collect();
    assert_eq!(report.dispatched, 1);
    assert_eq!(statuses, ["stopped", "stopped", "unsubscribed", "active"]);
    assert_eq!(world.messages_of(enrollments[3]).await?.len(), 1);
    assert_eq!(world.count("SELECT count(*) AS n FROM messages").await?, 1);
    Ok(())
}

#[tokio::test]
async fn paused_sequences_and_paused_enrollments_are_left_alone() -> anyhow::Result<()> {
    let world = World::new(1, 100, &[(0, 0, 0)]).await?;
    let now = at("2026-03-02T10:00:00Z")?;
    let enrollments = world.enroll(2, now).await?;
    world
        .exec(&format!(
            "UPDATE enrollments SET status = 'paused' WHERE id = '{}'",
            enrollments[0]
        ))
        .await?;
    let clock = Arc::new(ManualClock::new(now));
    let one = dispatcher(&world, &clock, 100);
    world.exec("UPDATE sequences SET status = 'paused'").await?;

    assert_eq!(drain(std::slice::from_ref(&one)).await?.claimed, 0);

    world.exec("UPDATE sequences SET status = 'active'").await?;
    let report = drain(std::slice::from_ref(&one)).await?;
    assert_eq!(report.dispatched, 1);
    assert_eq!(world.messages_of(enrollments[1]).await?.len(), 1);
    assert!(world.messages_of(enrollments[0]).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn after_the_last_step_an_enrollment_completes_and_deleted_steps_are_skipped()
-> anyhow::Result<()> {
    let world = World::new(1, 100, &[(0, 0, 0), (1, 0, 0), (1, 0, 0)]).await?;
    let now = at("2026-03-02T10:00:00Z")?;
    let enrollments = world.enroll(2, now).await?;
    world
        .exec(&format!(
            "UPDATE steps SET deleted_at = now() WHERE id = '{}'",
            world.steps[1]
        ))
        .await?;
    world
        .exec(&format!(
            "UPDATE enrollments SET current_step = 2 WHERE id = '{}'",
            enrollments[0]
        ))
        .await?;
    world
        .exec(&format!(
            "UPDATE enrollments SET current_step = 4 WHERE id = '{}'",
            enrollments[1]
        ))
        .await?;
    let clock = Arc::new(ManualClock::new(now));

    drain(&[dispatcher(&world, &clock, 100)]).await?;

    let messages = world.messages_of(enrollments[0]).await?;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].step_order, 3);
    assert_eq!(world.enrollment(enrollments[0]).await?.current_step, 3);
    assert_eq!(world.enrollment(enrollments[1]).await?.status, "completed");
    Ok(())
}

#[tokio::test]
async fn a_spaced_mailbox_sends_one_per_interval() -> anyhow::Result<()> {
    let world = World::new(1, 100, &[(0, 0, 0)]).await?;
    world
        .exec("UPDATE mailboxes SET min_interval_seconds = 600, max_jitter_seconds = 0")
        .await?;
    let now = at("2026-03-02T10:00:00Z")?;
    world.enroll(3, now).await?;
    let clock = Arc::new(ManualClock::new(now));
    let one = dispatcher(&world, &clock, 100);

    assert_eq!(drain(std::slice::from_ref(&one)).await?.dispatched, 1);
    // The 8-hour window over 100 sends spreads them at least 288 s apart; 600 s is more.
    let slot = at("2026-03-02T10:10:00Z")?;
    assert_eq!(
        world
            .count(&format!(
                "SELECT count(*) AS n FROM mailboxes WHERE next_send_slot_at = '{slot}'"
            ))
            .await?,
        1
    );
    clock.set(slot - TimeDelta::seconds(1));
    assert_eq!(drain(std::slice::from_ref(&one)).await?.dispatched, 0);
    clock.set(slot);
    assert_eq!(drain(std::slice::from_ref(&one)).await?.dispatched, 1);
    Ok(())
}

#[tokio::test]
async fn a_due_retry_goes_out_again_without_another_unit() -> anyhow::Result<()> {
    let world = World::new(1, 100, &[(0, 0, 0)]).await?;
    let now = at("2026-03-02T10:00:00Z")?;
    let enrollments = world.enroll(1, now).await?;
    let clock = Arc::new(ManualClock::new(now));
    let one = dispatcher(&world, &clock, 100);
    drain(std::slice::from_ref(&one)).await?;
    let day = now.date_naive();
    assert_eq!(world.reserved(world.mailboxes[0], day).await?, 1);
    let message = world.messages_of(enrollments[0]).await?.remove(0);
    world
        .exec(&format!(
            "UPDATE messages SET status = 'retrying', retry_at = '2026-03-02T10:05:00Z' \
              WHERE id = '{}'",
            message.id
        ))
        .await?;

    assert_eq!(drain(std::slice::from_ref(&one)).await?.retried, 0);
    clock.set(at("2026-03-02T10:05:00Z")?);
    assert_eq!(drain(std::slice::from_ref(&one)).await?.retried, 1);

    let again = world.messages_of(enrollments[0]).await?.remove(0);
    assert_eq!(again.status, "queued");
    assert_eq!(again.attempts, 2);
    assert_eq!(again.message_id_header, message.message_id_header);
    assert_eq!(world.reserved(world.mailboxes[0], day).await?, 1);
    assert_eq!(world.count("SELECT count(*) AS n FROM send_jobs").await?, 2);
    assert_eq!(
        world
            .count(&format!(
                "SELECT count(*) AS n FROM send_jobs WHERE attempt = 2 AND message_id = '{}'",
                message.id
            ))
            .await?,
        1
    );
    Ok(())
}

#[tokio::test]
async fn the_claim_is_an_index_range_not_a_scan() -> anyhow::Result<()> {
    let world = World::new(1, 100, &[(0, 0, 0)]).await?;
    let now = at("2026-03-02T10:00:00Z")?;
    world.enroll(2_000, now + TimeDelta::days(30)).await?;
    world.enroll(50, now).await?;
    world.exec("ANALYZE").await?;
    let plan = domain::db::dispatch::explain_claim(&mut world.conn().await?, now, 500).await?;
    assert!(
        plan.contains("due_enrollments_due_idx"),
        "claim plan does not use the due queue's index:\n{plan}"
    );
    for table in ["enrollments", "due_enrollments", "contacts"] {
        assert!(
            !plan.contains(&format!("Seq Scan on {table} ")),
            "claim plan scans {table}:\n{plan}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_paused_sequence_leaves_the_due_queue_and_comes_back_when_activated() -> anyhow::Result<()>
{
    let world = World::new(2, 100, &[(0, 0, 0)]).await?;
    let now = at("2026-03-02T10:00:00Z")?;
    world.enroll(40, now - TimeDelta::minutes(5)).await?;
    let clock = Arc::new(ManualClock::new(now));
    let one = dispatcher(&world, &clock, 100);
    let queued = "SELECT count(*) AS n FROM due_enrollments";
    assert_eq!(world.count(queued).await?, 40);

    let sequence = world.sequence_id;
    world
        .exec(&format!(
            "UPDATE sequences SET status = 'paused' WHERE id = '{sequence}'"
        ))
        .await?;
    // Idle rounds of a paused sequence walk nothing: its due steps are not queued.
    assert_eq!(world.count(queued).await?, 0);
    assert_eq!(drain(std::slice::from_ref(&one)).await?.claimed, 0);
    assert_eq!(
        world
            .count("SELECT count(*) AS n FROM enrollments WHERE next_send_at IS NOT NULL")
            .await?,
        40,
        "the enrollments keep their send times"
    );

    world
        .exec(&format!(
            "UPDATE sequences SET status = 'active' WHERE id = '{sequence}'"
        ))
        .await?;
    assert_eq!(world.count(queued).await?, 40);
    assert_eq!(drain(std::slice::from_ref(&one)).await?.dispatched, 40);
    assert_eq!(world.count(queued).await?, 0);
    assert_eq!(world.count("SELECT count(*) AS n FROM messages").await?, 40);
    Ok(())
}

/// Activating a sequence queues what is not queued and re-times what is queued at another
/// time, and leaves a row already right as it is (rewriting all of them was a tuple update
/// per enrolled contact).
#[tokio::test]
async fn an_activation_rewrites_no_queue_row_that_is_right() -> anyhow::Result<()> {
    let world = World::new(1, 100, &[(0, 0, 0)]).await?;
    let now = at("2026-03-02T10:00:00Z")?;
    let sequence = world.sequence_id;
    let before_pause = world.enroll(10, now).await?;
    world
        .exec(&format!(
            "UPDATE sequences SET status = 'paused' WHERE id = '{sequence}'"
        ))
        .await?;
    // Enrolled while paused: queued when enrolled.
    let while_paused = world.enroll(30, now + TimeDelta::hours(1)).await?;
    let queued = "SELECT count(*) AS n FROM due_enrollments";
    assert_eq!(world.count(queued).await?, 30);
    let stale = while_paused[0];
    world
        .exec(&format!(
            "UPDATE due_enrollments SET due_at = due_at - interval '1 hour' \
              WHERE enrollment_id = '{stale}'"
        ))
        .await?;
    world
        .exec(
            "CREATE TABLE queued_before AS \
             SELECT enrollment_id, xmin::text AS version FROM due_enrollments",
        )
        .await?;

    world
        .exec(&format!(
            "UPDATE sequences SET status = 'active' WHERE id = '{sequence}'"
        ))
        .await?;
    assert_eq!(world.count(queued).await?, 40);
    assert_eq!(
        world
            .count(
                "SELECT count(*) AS n FROM due_enrollments d \
                   JOIN enrollments e ON e.id = d.enrollment_id WHERE d.due_at = e.next_send_at"
            )
            .await?,
        40,
        "every enrollment queued at its send time"
    );
    let untouched = "SELECT count(*) AS n FROM due_enrollments d \
                       JOIN queued_before b USING (enrollment_id) WHERE d.xmin::text = b.version";
    assert_eq!(
        world.count(untouched).await?,
        29,
        "only the stale row is rewritten"
    );
    for id in before_pause.iter().chain([&stale]) {
        assert_eq!(
            world
                .count(&format!(
                    "SELECT count(*) AS n FROM due_enrollments d \
                      WHERE d.enrollment_id = '{id}' \
                        AND NOT EXISTS (SELECT 1 FROM queued_before b \
                                         WHERE b.enrollment_id = d.enrollment_id \
                                           AND b.version = d.xmin::text)"
                ))
                .await?,
            1,
            "{id} (re)queued by the activation"
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_due_queue_follows_every_write_of_an_enrollment() -> anyhow::Result<()> {
    let world = World::new(1, 100, &[(0, 0, 0)]).await?;
    let now = at("2026-03-02T10:00:00Z")?;
    let ids = world.enroll(3, now + TimeDelta::hours(1)).await?;
    let queued = |id: uuid::Uuid| {
        format!(
            "SELECT count(*) AS n FROM due_enrollments d JOIN enrollments e \
                 ON e.id = d.enrollment_id \
              WHERE d.enrollment_id = '{id}' AND d.due_at = e.next_send_at"
        )
    };
    for id in &ids {
        assert_eq!(world.count(&queued(*id)).await?, 1);
    }
    // A new send time moves the queue row; pausing takes it out; resuming puts it back.
    world
        .exec(&format!(
            "UPDATE enrollments SET next_send_at = next_send_at + interval '1 day' \
              WHERE id = '{}'",
            ids[0]
        ))
        .await?;
    assert_eq!(world.count(&queued(ids[0])).await?, 1);
    world
        .exec(&format!(
            "UPDATE enrollments SET status = 'paused' WHERE id = '{}'",
            ids[1]
        ))
        .await?;
    assert_eq!(world.count(&queued(ids[1])).await?, 0);
    world
        .exec(&format!(
            "UPDATE enrollments SET status = 'active' WHERE id = '{}'",
            ids[1]
        ))
        .await?;
    assert_eq!(world.count(&queued(ids[1])).await?, 1);
    // Ending or deleting an enrollment removes its row.
    world
        .exec(&format!(
            "UPDATE enrollments SET status = 'completed', next_send_at = NULL WHERE id = '{}'",
            ids[2]
        ))
        .await?;
    assert_eq!(world.count(&queued(ids[2])).await?, 0);
    world
        .exec(&format!("DELETE FROM enrollments WHERE id = '{}'", ids[0]))
        .await?;
    assert_eq!(
        world
            .count("SELECT count(*) AS n FROM due_enrollments")
            .await?,
        1
    );
    Ok(())
}

/// Enrollments queued while their sequence is paused, claimed by rounds racing the activation:
/// however the activation falls between a claim's snapshot and its locks, every enrollment is
/// dispatched once (a claim reading the sequence's status from its snapshot deleted the queue
/// rows the activation had just re-queued, and those enrollments were never sent).
#[tokio::test]
async fn claims_racing_an_activation_lose_no_enrollment() -> anyhow::Result<()> {
    const ROUNDS: usize = 30;
    const EACH: i64 = 150;
    let world = World::new(2, 10_000, &[(0, 0, 0)]).await?;
    let now = at("2026-03-02T10:00:00Z")?;
    let clock = Arc::new(ManualClock::new(now));
    let replicas: Vec<Dispatcher> = (0..2).map(|_| dispatcher(&world, &clock, 50)).collect();
    let sequence = world.sequence_id;
    for round in 1..=ROUNDS {
        world
            .exec(&format!(
                "UPDATE sequences SET status = 'paused' WHERE id = '{sequence}'"
            ))
            .await?;
        world.enroll(EACH, now - TimeDelta::minutes(5)).await?;
        let racing = futures::future::try_join_all(replicas.iter().map(|d| async move {
            for _ in 0..20 {
                d.run_once().await?;
                tokio::task::yield_now().await;
            }
            anyhow::Ok(())
        }));
        let activation = async {
            tokio::time::sleep(std::time::Duration::from_millis(round as u64 * 3)).await;
            world
                .exec(&format!(
                    "UPDATE sequences SET status = 'active' WHERE id = '{sequence}'"
                ))
                .await
        };
        tokio::try_join!(racing, activation)?;
        drain(&replicas).await?;
        assert_eq!(
            world
                .count("SELECT count(DISTINCT enrollment_id) AS n FROM messages")
                .await?,
            round as i64 * EACH,
            "round {round}: every enrollment dispatched once"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_step_deleted_while_a_round_plans_it_fails_that_round_and_loses_nothing()
-> anyhow::Result<()> {
    use diesel_async::SimpleAsyncConnection as _;
    let world = World::new(2, 100, &[(0, 0, 0), (0, 1, 0)]).await?;
    let now = at("2026-03-02T10:00:00Z")?;
    let enrollments = world.enroll(4, now).await?;
    let clock = Arc::new(ManualClock::new(now));
    let one = dispatcher(&world, &clock, 100);

    // A transaction deletes the first step (as removing a never-emailed step does) and
    // holds it: the round still reads the step as live, reserves, then waits at
    // `lock_references` for the delete, where the key checks of `messages` used to wait.
    let mut deleter = world.conn().await?;
    deleter
        .batch_execute(&format!(
            "BEGIN; DELETE FROM steps WHERE id = '{}'",
            world.steps[0]
        ))
        .await?;
    let round = tokio::spawn(async move { one.run_once().await });
    domain::testing::poll_until(
        std::time::Duration::from_secs(60),
        "the round to wait for the deleted step",
        || async {
            let waiting = world
                .count(
                    "SELECT count(*) AS n FROM pg_stat_activity \
                      WHERE datname = current_database() AND wait_event_type = 'Lock' \
                        AND query LIKE '%FOR KEY SHARE%'",
                )
                .await
                .ok()?;
            (waiting == 1).then_some(())
        },
    )
    .await?;
    deleter.batch_execute("COMMIT").await?;
    let failed = round.await?;
    assert!(
        matches!(failed, Err(scheduler::dispatch::DispatchError::Gone)),
        "{failed:?}"
    );
    assert_eq!(world.count("SELECT count(*) AS n FROM messages").await?, 0);
    assert_eq!(world.count("SELECT count(*) AS n FROM send_jobs").await?, 0);
    let day = now.date_naive();
    for mailbox in &world.mailboxes {
        assert_eq!(world.reserved(*mailbox, day).await?, 0, "units given back");
    }

    // The next rounds send the step after it, once each.
    let again = dispatcher(&world, &clock, 100);
    assert_eq!(drain(std::slice::from_ref(&again)).await?.dispatched, 4);
    for id in &enrollments {
        let messages = world.messages_of(*id).await?;
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].step_order, 2);
    }
    assert_eq!(world.count("SELECT count(*) AS n FROM send_jobs").await?, 4);
    Ok(())
}

#[tokio::test]
async fn deleting_an_enrollment_a_mailbox_or_a_step_deletes_their_messages() -> anyhow::Result<()> {
    let world = World::new(2, 100, &[(0, 0, 0)]).await?;
    let now = at("2026-03-02T10:00:00Z")?;
    let enrollments = world.enroll(6, now).await?;
    let clock = Arc::new(ManualClock::new(now));
    assert_eq!(
        drain(&[dispatcher(&world, &clock, 100)]).await?.dispatched,
        6
    );
    let messages = "SELECT count(*) AS n FROM messages";
    assert_eq!(world.count(messages).await?, 6);

    world
        .exec(&format!(
            "DELETE FROM enrollments WHERE id = '{}'",
            enrollments[0]
        ))
        .await?;
    assert_eq!(world.count(messages).await?, 5);
    let of_mailbox = world
        .count(&format!(
            "SELECT count(*) AS n FROM messages WHERE mailbox_id = '{}'",
            world.mailboxes[0]
        ))
        .await?;
    assert!(of_mailbox > 0);
    world
        .exec(&format!(
            "DELETE FROM mailboxes WHERE id = '{}'",
            world.mailboxes[0]
        ))
        .await?;
    assert_eq!(world.count(messages).await?, 5 - of_mailbox);
    world
        .exec(&format!(
            "DELETE FROM steps WHERE id = '{}'",
            world.steps[0]
        ))
        .await?;
    assert_eq!(world.count(messages).await?, 0);
    Ok(())
}
