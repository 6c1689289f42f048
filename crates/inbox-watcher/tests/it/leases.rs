//! Replicas share the mailboxes through leases: each mailbox is read by exactly one, and a
//! replica that stops hands its mailboxes over.

use std::collections::{HashMap, HashSet};

use domain::events::EmailEvent;
use domain::testing::poll_until;

use crate::world::{InboxWorld, Seller, WAIT, Watcher, deliver, reply, watching};

/// Owners of the sellers' watches, when every one is watched.
async fn owners(world: &InboxWorld, sellers: &[Seller]) -> Option<HashMap<String, usize>> {
    let mut owners = HashMap::new();
    for seller in sellers {
        let row = world.watch_row(seller.mailbox_id).await.ok()??;
        if !watching(&row) {
            return None;
        }
        *owners.entry(row.owner?).or_insert(0) += 1;
    }
    Some(owners)
}

#[tokio::test]
async fn each_mailbox_is_read_by_one_replica_and_taken_over_when_its_replica_stops()
-> anyhow::Result<()> {
    let world = InboxWorld::new(true).await?;
    let mut sellers = Vec::new();
    let mut sent = Vec::new();
    for _ in 0..4 {
        let seller = world.seller().await?;
        sent.push(world.sent(&seller, "Partnership").await?);
        sellers.push(seller);
    }
    let mut small = world.config.clone();
    small.inbox_watcher.max_mailboxes = 2;
    let first = Watcher::start(small).await?;
    poll_until(WAIT, "the first replica at its limit", || async {
        let count = world
            .db
            .count(&format!(
                "SELECT count(*) AS n FROM inbox_watches WHERE owner = '{}'",
                first.owner
            ))
            .await
            .ok()?;
        (count == 2).then_some(())
    })
    .await?;
    let second = world.watcher().await?;
    let split = poll_until(WAIT, "every mailbox watched", || owners(&world, &sellers)).await?;
    assert_eq!(split.get(&first.owner), Some(&2), "{split:?}");
    assert_eq!(split.get(&second.owner), Some(&2), "{split:?}");

    for (seller, sent) in sellers.iter().zip(&sent) {
        deliver(
            &sent.contact,
            &seller.address,
            &reply(sent, seller, "Interested"),
        )
        .await?;
    }
    let events = world.wait_events(4).await?;
    let replied: HashSet<_> = events
        .iter()
        .filter_map(|e| match &e.body {
            EmailEvent::Replied { message, .. } => Some(message.message_id),
            _ => None,
        })
        .collect();
    let expected: HashSet<_> = sent.iter().map(|s| s.message_id).collect();
    assert_eq!(replied, expected);

    let first_owner = first.owner.clone();
    first.stop().await?;
    let taken = poll_until(WAIT, "the second replica holding all", || async {
        owners(&world, &sellers)
            .await
            .filter(|o| o.get(&second.owner) == Some(&4))
    })
    .await?;
    assert!(!taken.contains_key(&first_owner));
    for (seller, sent) in sellers.iter().zip(&sent) {
        deliver(
            &sent.contact,
            &seller.address,
            &reply(sent, seller, "One more thing"),
        )
        .await?;
    }
    let events = world.wait_events(8).await?;
    assert_eq!(events.len(), 8, "each email once: {events:?}");
    let ids: HashSet<_> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 8);
    second.stop().await?;
    Ok(())
}
