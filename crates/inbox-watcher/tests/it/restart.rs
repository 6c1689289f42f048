//! The real binary killed in the middle of reading a mailbox, then started again: every
//! email's event is recorded exactly once and reaches Kafka.

use std::collections::HashSet;
use std::time::Duration;

use domain::events::EmailEvent;
use domain::kafka::TopicNames;
use domain::testing::process_stats::service_command;
use domain::testing::{count_records, poll_until, read_topic};

use crate::world::{InboxWorld, Sent, WAIT, deliver, reply};

fn start_binary(world: &InboxWorld) -> anyhow::Result<tokio::process::Child> {
    let watcher = &world.config.inbox_watcher;
    Ok(
        service_command(env!("CARGO_BIN_EXE_inbox-watcher"), &world.config)
            .env("SEQ_INBOX_WATCHER__ADMIN_BIND", "127.0.0.1:0")
            // One email per transaction, so a kill lands between two of them.
            .env("SEQ_INBOX_WATCHER__FETCH_BATCH", "1")
            // The test reads the recorded events from the outbox.
            .env("SEQ_OUTBOX__RETENTION_SECONDS", "3600")
            .env(
                "SEQ_INBOX_WATCHER__LEASE_SECONDS",
                watcher.lease_seconds.to_string(),
            )
            .env(
                "SEQ_INBOX_WATCHER__CLAIM_INTERVAL_MS",
                watcher.claim_interval_ms.to_string(),
            )
            .spawn()?,
    )
}

#[tokio::test]
async fn a_watcher_killed_mid_read_and_started_again_loses_and_repeats_nothing()
-> anyhow::Result<()> {
    let world = InboxWorld::new(true).await?;
    let seller = world.seller().await?;
    let mut sent: Vec<Sent> = Vec::new();
    for _ in 0..30 {
        let one = world.sent(&seller, "Demo").await?;
        deliver(&one.contact, &seller.address, &reply(&one, &seller, "Sure")).await?;
        sent.push(one);
    }

    let mut first = start_binary(&world)?;
    world
        .wait_watch(seller.mailbox_id, "the first email recorded", |row| {
            row.last_uid >= 1
        })
        .await?;
    // SIGKILL: no graceful stop, the lease is left to run out.
    first.kill().await?;
    let at_kill = world.watch_row(seller.mailbox_id).await?;
    println!("killed at {at_kill:?}");

    for _ in 0..5 {
        let one = world.sent(&seller, "Demo").await?;
        deliver(
            &one.contact,
            &seller.address,
            &reply(&one, &seller, "Later"),
        )
        .await?;
        sent.push(one);
    }
    let mut second = start_binary(&world)?;
    world
        .wait_watch(seller.mailbox_id, "every email read", |row| {
            row.last_uid == 35
        })
        .await?;
    let events = world.wait_events(35).await?;
    assert_eq!(events.len(), 35, "one event per email");
    let replied: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.body {
            EmailEvent::Replied { message, .. } => Some(message.message_id),
            _ => None,
        })
        .collect();
    let unique: HashSet<_> = replied.iter().copied().collect();
    assert_eq!(unique.len(), 35);
    assert_eq!(unique, sent.iter().map(|s| s.message_id).collect());

    // All of them reached Kafka. A relay killed between publishing and marking a row
    // publishes it again (the scheduler stores each envelope id once), so the topic may hold
    // more records than ids: read all it holds until every recorded id is there.
    let topic = TopicNames::from_config(&world.config.kafka).email_events;
    let recorded: HashSet<String> = events.iter().map(|e| e.id.to_string()).collect();
    let kafka = &world.config.kafka;
    let published = poll_until(WAIT, "every recorded event on Kafka", || async {
        let total = usize::try_from(count_records(kafka, &topic).await.ok()?).ok()?;
        let records = read_topic(kafka, &topic, total, Duration::from_secs(20))
            .await
            .ok()?;
        let ids: HashSet<String> = records
            .iter()
            .filter_map(|r| r.payload_json().ok()?["id"].as_str().map(str::to_owned))
            .collect();
        (ids == recorded).then_some(ids)
    })
    .await?;
    assert_eq!(published.len(), 35);
    second.kill().await?;
    Ok(())
}
