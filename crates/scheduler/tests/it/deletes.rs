//! Deleting what events and the due queue name, now that `events` and `due_enrollments` have
//! no foreign keys (migration 000082): the statement triggers unlink or delete the rows as the
//! keys' ON DELETE actions did, and a delete racing the scheduler's apply of an event (on two
//! real connections) leaves no event naming a row that is gone.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::sql_types::Uuid as SqlUuid;
use diesel_async::{AsyncConnection as _, RunQueryDsl, SimpleAsyncConnection as _};
use domain::clock::{Clock, ManualClock};
use domain::events::{Client, EmailEvent, MessageRef};
use domain::kafka::Envelope;
use domain::testing::poll_until;
use scheduler::dispatch::Dispatcher;
use scheduler::outcomes;
use uuid::Uuid;

use crate::outcomes::{apply, envelope, one_sent_step, webhooks};
use crate::world::{World, at};

/// Events naming a message, an enrollment or a contact that no longer exists.
const DANGLING: &str = "SELECT count(*) AS n FROM events e \
     WHERE (e.message_id IS NOT NULL \
            AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = e.message_id)) \
        OR (e.enrollment_id IS NOT NULL \
            AND NOT EXISTS (SELECT 1 FROM enrollments n WHERE n.id = e.enrollment_id)) \
        OR (e.contact_id IS NOT NULL \
            AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.id = e.contact_id)) \
        OR NOT EXISTS (SELECT 1 FROM workspaces w WHERE w.id = e.workspace_id)";

fn opened(message_id: Uuid, enrollment_id: Uuid) -> EmailEvent {
    EmailEvent::Opened {
        message: MessageRef {
            message_id,
            enrollment_id,
        },
        is_bot: false,
        bot_reason: None,
        client: Client::default(),
    }
}

/// Recorded only: no statistics row (of the step a test deletes) is written, so what a
/// delete waits for is the enrollment's lock alone.
fn soft_bounce(message_id: Uuid, enrollment_id: Uuid) -> EmailEvent {
    EmailEvent::Bounced {
        message: MessageRef {
            message_id,
            enrollment_id,
        },
        hard: false,
        diagnostic: None,
    }
}

/// An enrollment, its sent message and the message's mailbox and contact.
#[derive(Debug, Clone, Copy)]
struct Sent {
    enrollment: Uuid,
    message: Uuid,
    mailbox: Uuid,
    contact: Uuid,
}

/// `n` enrollments of a two-step sequence, their first messages sent at `now`, each opened
/// once (an event naming the message, the enrollment and the contact).
async fn opened_world(n: i64, now: DateTime<Utc>) -> anyhow::Result<(World, Vec<Sent>)> {
    let world = World::new(2, 100, &[(0, 0, 0), (1, 0, 0)]).await?;
    let enrollments = world.enroll(n, now).await?;
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(now));
    let dispatcher = Dispatcher::new(world.pool.clone(), clock, 100, "jobs".to_owned());
    assert_eq!(dispatcher.run_once().await?.dispatched, enrollments.len());
    let mut sent = Vec::new();
    for enrollment in enrollments {
        let message = world.messages_of(enrollment).await?.remove(0);
        let contact = contact_of(&world, enrollment).await?;
        sent.push(Sent {
            enrollment,
            message: message.id,
            mailbox: message.mailbox_id,
            contact,
        });
    }
    let messages: Vec<Uuid> = sent.iter().map(|s| s.message).collect();
    world.sent_by_worker(&messages, now).await?;
    for s in &sent {
        assert!(
            apply(
                &world,
                &envelope(&world, now, opened(s.message, s.enrollment))
            )
            .await?
        );
    }
    Ok((world, sent))
}

async fn contact_of(world: &World, enrollment: Uuid) -> anyhow::Result<Uuid> {
    #[derive(diesel::QueryableByName)]
    struct Contact {
        #[diesel(sql_type = SqlUuid)]
        contact_id: Uuid,
    }
    let row: Contact = diesel::sql_query("SELECT contact_id FROM enrollments WHERE id = $1")
        .bind::<SqlUuid, _>(enrollment)
        .get_result(&mut world.conn().await?)
        .await?;
    Ok(row.contact_id)
}

/// How many events name `column` = `id`.
async fn naming(world: &World, column: &str, id: Uuid) -> anyhow::Result<i64> {
    world
        .count(&format!(
            "SELECT count(*) AS n FROM events WHERE {column} = '{id}'"
        ))
        .await
}

#[tokio::test]
async fn each_delete_unlinks_or_deletes_the_events_naming_what_it_deleted() -> anyhow::Result<()> {
    let now = at("2026-03-02T10:00:00Z")?;
    let (world, sent) = opened_world(5, now).await?;
    let events = "SELECT count(*) AS n FROM events";
    assert_eq!(world.count(events).await?, 5);

    // An enrollment: its event loses it and its message (deleted with it), keeps its contact.
    let [gone, ..] = sent[..] else {
        anyhow::bail!("no enrollment")
    };
    world
        .exec(&format!(
            "DELETE FROM enrollments WHERE id = '{}'",
            gone.enrollment
        ))
        .await?;
    assert_eq!(naming(&world, "enrollment_id", gone.enrollment).await?, 0);
    assert_eq!(naming(&world, "message_id", gone.message).await?, 0);
    assert_eq!(naming(&world, "contact_id", gone.contact).await?, 1);

    // Two contacts in one statement: their enrollments, messages and themselves unlinked.
    world
        .exec(&format!(
            "DELETE FROM contacts WHERE id IN ('{}', '{}')",
            sent[1].contact, sent[2].contact
        ))
        .await?;
    for s in &sent[1..3] {
        assert_eq!(naming(&world, "contact_id", s.contact).await?, 0);
        assert_eq!(naming(&world, "enrollment_id", s.enrollment).await?, 0);
        assert_eq!(naming(&world, "message_id", s.message).await?, 0);
    }

    // A step and a mailbox delete their messages: the events lose only the message.
    world
        .exec(&format!(
            "DELETE FROM mailboxes WHERE id = '{}'",
            sent[3].mailbox
        ))
        .await?;
    assert_eq!(naming(&world, "message_id", sent[3].message).await?, 0);
    assert_eq!(
        naming(&world, "enrollment_id", sent[3].enrollment).await?,
        1
    );
    world
        .exec(&format!(
            "DELETE FROM steps WHERE id = '{}'",
            world.steps[0]
        ))
        .await?;
    assert_eq!(world.count("SELECT count(*) AS n FROM messages").await?, 0);
    assert_eq!(naming(&world, "message_id", sent[4].message).await?, 0);
    assert_eq!(
        naming(&world, "enrollment_id", sent[4].enrollment).await?,
        1
    );
    assert_eq!(world.count(events).await?, 5, "unlinked, not deleted");
    assert_eq!(world.count(DANGLING).await?, 0);

    // A workspace deletes its events, and only its own.
    let other = Uuid::now_v7();
    world
        .exec(&format!(
            "INSERT INTO workspaces (id, name) VALUES ('{other}', 'other')"
        ))
        .await?;
    world
        .exec(&format!(
            "INSERT INTO events (id, workspace_id, event_type, occurred_at) \
             VALUES (gen_random_uuid(), '{other}', 'opened', now())"
        ))
        .await?;
    world
        .exec(&format!(
            "DELETE FROM workspaces WHERE id = '{}'",
            world.workspace_id
        ))
        .await?;
    assert_eq!(world.count(events).await?, 1);
    assert_eq!(naming(&world, "workspace_id", other).await?, 1);
    Ok(())
}

/// Applies `event` in a transaction that, once the event is stored, waits until another
/// connection running `delete` waits for it, then commits; returns what the delete did.
async fn delete_while_applying(
    world: &World,
    event: &Envelope<EmailEvent>,
    delete: &str,
) -> anyhow::Result<usize> {
    let mut applying = world.conn().await?;
    let mut deleting = world.conn().await?;
    applying.batch_execute("BEGIN").await?;
    assert!(outcomes::apply(&mut applying, event, &webhooks()).await?);
    let statement = delete.to_owned();
    let deleter =
        tokio::spawn(async move { diesel::sql_query(statement).execute(&mut deleting).await });
    poll_until(
        Duration::from_secs(30),
        "the delete to wait for the event's transaction",
        || waiting(world, "DELETE FROM"),
    )
    .await?;
    applying.batch_execute("COMMIT").await?;
    Ok(deleter.await??)
}

/// How many events are `event` and meet `condition` (0 or 1).
async fn recorded_with(
    world: &World,
    event: &Envelope<EmailEvent>,
    condition: &str,
) -> anyhow::Result<i64> {
    world
        .count(&format!(
            "SELECT count(*) AS n FROM events WHERE id = '{}' AND {condition}",
            event.id
        ))
        .await
}

/// `event` is stored naming `enrollment` and no message, and no event names a deleted row.
async fn message_unlinked(
    world: &World,
    event: &Envelope<EmailEvent>,
    enrollment: Uuid,
) -> anyhow::Result<()> {
    let condition = format!("message_id IS NULL AND enrollment_id = '{enrollment}'");
    assert_eq!(recorded_with(world, event, &condition).await?, 1);
    assert_eq!(world.count(DANGLING).await?, 0);
    Ok(())
}

/// Some when a backend of the world's database runs a statement starting with `prefix` and
/// waits for a lock.
async fn waiting(world: &World, prefix: &str) -> Option<()> {
    let n = world
        .count(&format!(
            "SELECT count(*) AS n FROM pg_stat_activity \
              WHERE datname = current_database() AND wait_event_type = 'Lock' \
                AND query LIKE '{prefix}%'"
        ))
        .await
        .ok()?;
    (n == 1).then_some(())
}

#[tokio::test]
async fn a_step_deleted_while_an_event_of_its_message_applies_waits_and_unlinks_it()
-> anyhow::Result<()> {
    let now = at("2026-03-02T10:00:00Z")?;
    let (world, enrollment, message) = one_sent_step(&[(0, 0, 0), (1, 0, 0)], now).await?;
    let event = envelope(&world, now, soft_bounce(message, enrollment));
    let deleted = delete_while_applying(
        &world,
        &event,
        &format!("DELETE FROM steps WHERE id = '{}'", world.steps[0]),
    )
    .await?;
    assert_eq!(deleted, 1);
    assert_eq!(world.count("SELECT count(*) AS n FROM messages").await?, 0);
    message_unlinked(&world, &event, enrollment).await
}

#[tokio::test]
async fn a_contact_deleted_while_an_event_of_it_applies_waits_and_unlinks_it() -> anyhow::Result<()>
{
    let now = at("2026-03-02T10:00:00Z")?;
    let (world, enrollment, message) = one_sent_step(&[(0, 0, 0), (1, 0, 0)], now).await?;
    let contact = contact_of(&world, enrollment).await?;
    let event = envelope(&world, now, soft_bounce(message, enrollment));
    let deleted = delete_while_applying(
        &world,
        &event,
        &format!("DELETE FROM contacts WHERE id = '{contact}'"),
    )
    .await?;
    assert_eq!(deleted, 1);
    assert_eq!(
        recorded_with(
            &world,
            &event,
            "message_id IS NULL AND enrollment_id IS NULL AND contact_id IS NULL"
        )
        .await?,
        1
    );
    assert_eq!(world.count(DANGLING).await?, 0);
    Ok(())
}

#[tokio::test]
async fn an_event_applied_while_its_message_is_deleted_with_its_mailbox_waits_and_names_none()
-> anyhow::Result<()> {
    let now = at("2026-03-02T10:00:00Z")?;
    let (world, enrollment, message) = one_sent_step(&[(0, 0, 0), (1, 0, 0)], now).await?;
    let mailbox = world.messages_of(enrollment).await?.remove(0).mailbox_id;
    // The delete first, held open; the event's transaction waits for it at its enrollment.
    let mut deleter = world.conn().await?;
    deleter
        .batch_execute(&format!(
            "BEGIN; DELETE FROM mailboxes WHERE id = '{mailbox}'"
        ))
        .await?;
    let event = envelope(&world, now, soft_bounce(message, enrollment));
    let mut applying = world.conn().await?;
    let applied_event = event.clone();
    let apply = tokio::spawn(async move {
        applying
            .transaction(async |tx| outcomes::apply(tx, &applied_event, &webhooks()).await)
            .await
    });
    poll_until(
        Duration::from_secs(30),
        "the event's transaction to wait for the delete",
        || waiting(&world, "SELECT e.id, e.workspace_id"),
    )
    .await?;
    deleter.batch_execute("COMMIT").await?;
    assert!(apply.await??, "recorded, about its enrollment");
    message_unlinked(&world, &event, enrollment).await
}

#[tokio::test]
async fn an_activation_racing_an_enrollment_delete_queues_no_orphan() -> anyhow::Result<()> {
    let world = World::new(1, 100, &[(0, 0, 0)]).await?;
    let now = at("2026-03-02T10:00:00Z")?;
    world
        .exec(&format!(
            "UPDATE sequences SET status = 'paused' WHERE id = '{}'",
            world.sequence_id
        ))
        .await?;
    let enrollments = world.enroll(2, now).await?;
    // The delete first, held open; the activation re-queues the sequence's enrollments and
    // waits for the deleted one, then skips it.
    let mut deleter = world.conn().await?;
    deleter
        .batch_execute(&format!(
            "BEGIN; DELETE FROM enrollments WHERE id = '{}'",
            enrollments[0]
        ))
        .await?;
    let mut activating = world.conn().await?;
    let activation = format!(
        "UPDATE sequences SET status = 'active' WHERE id = '{}'",
        world.sequence_id
    );
    let activate =
        tokio::spawn(async move { diesel::sql_query(activation).execute(&mut activating).await });
    poll_until(
        Duration::from_secs(30),
        "the activation to wait for the delete",
        || waiting(&world, "UPDATE sequences"),
    )
    .await?;
    deleter.batch_execute("COMMIT").await?;
    assert_eq!(activate.await??, 1);
    assert_eq!(
        world
            .count(
                "SELECT count(*) AS n FROM due_enrollments d \
                  WHERE NOT EXISTS (SELECT 1 FROM enrollments e WHERE e.id = d.enrollment_id)"
            )
            .await?,
        0,
        "no queue row without its enrollment"
    );
    assert_eq!(
        world
            .count(&format!(
                "SELECT count(*) AS n FROM due_enrollments WHERE enrollment_id = '{}'",
                enrollments[1]
            ))
            .await?,
        1
    );
    Ok(())
}
