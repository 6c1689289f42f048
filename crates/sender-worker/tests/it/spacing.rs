//! The per-mailbox guard: claims of one spaced mailbox's messages are at least its interval
//! apart, whichever worker makes them, because the claim moves the mailbox's last send under
//! its row lock.

use chrono::{TimeDelta, Utc};
use domain::db::sending;

use crate::world::{Step, World, greenmail_smtp};

const STEP: Step = Step {
    subject: "Spaced",
    content: "Hello",
    thread_with_previous: false,
};

#[tokio::test]
async fn two_workers_claim_one_message_of_a_spaced_mailbox_per_interval() -> anyhow::Result<()> {
    let world = World::new(greenmail_smtp()?, &[STEP]).await?;
    world
        .exec(&format!(
            "UPDATE mailboxes SET min_interval_seconds = 60 WHERE id = '{}'",
            world.mailbox_id
        ))
        .await?;
    let messages = world.enroll_many(3, "spaced", "example.org").await?;
    let now = Utc::now();
    let lease = now + TimeDelta::minutes(5);
    let (mut a, mut b) = (world.conn().await?, world.conn().await?);

    // Both workers race for all three messages at the same moment: one message in all.
    let (first, second) = tokio::join!(
        sending::claim(&mut a, &messages, "worker-a", now, lease),
        sending::claim(&mut b, &messages, "worker-b", now, lease),
    );
    let (first, second) = (first?, second?);
    assert_eq!(first.len() + second.len(), 1, "{first:?}\n{second:?}");

    // The others wait for the interval, and say until when.
    let rest: Vec<_> = messages
        .iter()
        .filter(|id| !first.iter().chain(&second).any(|m| m.id == **id))
        .copied()
        .collect();
    let waiting = sending::unclaimed(&mut a, &rest).await?;
    assert_eq!(waiting.len(), 2);
    for message in &waiting {
        assert_eq!(message.status, "queued");
        let next = message
            .next_allowed_at
            .ok_or_else(|| anyhow::anyhow!("no next time"))?;
        assert!(
            (next - now - TimeDelta::seconds(60))
                .num_milliseconds()
                .abs()
                < 1
        );
    }
    let early = now + TimeDelta::seconds(59);
    assert!(
        sending::claim(&mut b, &rest, "worker-b", early, lease)
            .await?
            .is_empty()
    );

    // Once it has passed, the next one (and only one) goes.
    let later = now + TimeDelta::seconds(60);
    assert_eq!(
        sending::claim(&mut b, &rest, "worker-b", later, lease)
            .await?
            .len(),
        1
    );
    Ok(())
}

#[tokio::test]
async fn a_worker_sends_a_spaced_mailbox_s_queue_an_interval_apart() -> anyhow::Result<()> {
    let world = World::new(greenmail_smtp()?, &[STEP]).await?;
    world
        .exec(&format!(
            "UPDATE mailboxes SET min_interval_seconds = 1 WHERE id = '{}'",
            world.mailbox_id
        ))
        .await?;
    let messages = world.enroll_many(3, "paced", "example.org").await?;
    for id in &messages {
        world.publish_job(*id).await?;
    }
    let worker = world.start_worker()?;
    for id in &messages {
        world.wait_for(*id, &["sent"]).await?;
    }
    // Claims are what the guard spaces; each claim moved the mailbox's last send, so the
    // sends cannot have started closer than a second apart: three took at least two seconds.
    let span_ms = world
        .count(
            "SELECT (extract(epoch FROM max(sent_at) - min(sent_at)) * 1000)::int8 AS n \
               FROM messages",
        )
        .await?;
    assert!(span_ms >= 1_900, "three sends within {span_ms} ms");
    worker.stop().await
}
