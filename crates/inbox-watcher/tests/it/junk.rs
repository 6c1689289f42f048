//! Bounces and automatic answers a server files into Junk are read too: GreenMail has no
//! SPECIAL-USE, so its `Junk` folder is found by name. Each folder keeps a read position of
//! its own, `inbox_watcher.folders` replaces the discovery, and nothing is read twice.

use std::collections::HashSet;

use domain::events::EmailEvent;

use crate::world::{
    InboxWorld, Seller, Sent, deliver, delivery_report, email, file_into, reply, seen_uids_in,
    watching,
};

const MAILER_DAEMON: &str = "mailer-daemon@mx.prospect.test";

fn out_of_office(sent: &Sent, seller: &Seller) -> String {
    let headers = format!(
        "In-Reply-To: {id}\r\nReferences: {id}\r\nAuto-Submitted: auto-replied\r\n",
        id = sent.message_id_header
    );
    email(
        &sent.contact,
        &seller.address,
        &format!("Automatic reply: {}", sent.subject),
        &headers,
        "I am out of the office until Monday.",
    )
}

/// The last UID read in `folder`, if it was read at all.
fn last_uid(rows: &[super::world::PositionRow], folder: &str) -> Option<i64> {
    rows.iter().find(|r| r.folder == folder).map(|r| r.last_uid)
}

#[tokio::test]
async fn bounces_and_auto_replies_filed_into_junk_become_events_read_once_per_folder()
-> anyhow::Result<()> {
    let world = InboxWorld::new(true).await?;
    let seller = world.seller().await?;
    let gone = world.sent(&seller, "Hello there").await?;
    let away = world.sent(&seller, "Quick question").await?;
    let answered = world.sent(&seller, "Intro").await?;
    let later = world.sent(&seller, "Pricing").await?;
    file_into(
        &seller.address,
        "Junk",
        &delivery_report(&gone, &seller, "5.1.1"),
    )
    .await?;
    file_into(&seller.address, "Junk", &out_of_office(&away, &seller)).await?;
    deliver(
        &answered.contact,
        &seller.address,
        &reply(&answered, &seller, "Yes"),
    )
    .await?;

    let first = world.watcher().await?;
    let events = world.wait_events(3).await?;
    let positions = world
        .wait_positions(seller.mailbox_id, "both folders read", |rows| {
            last_uid(rows, "INBOX") == Some(1) && last_uid(rows, "Junk") == Some(2)
        })
        .await?;
    assert_eq!(positions.len(), 2, "{positions:?}");
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(events.iter().any(|e| matches!(&e.body,
        EmailEvent::Bounced { message, hard: true, .. } if message.message_id == gone.message_id)));
    assert!(events.iter().any(|e| matches!(&e.body,
        EmailEvent::AutoReplied { message, .. } if message.message_id == away.message_id)));
    assert!(events.iter().any(|e| matches!(&e.body,
        EmailEvent::Replied { message, .. } if message.message_id == answered.message_id)));

    // While IDLE waits on INBOX, Junk is still looked at.
    let row = world
        .wait_watch(seller.mailbox_id, "the mailbox watched", watching)
        .await?;
    assert_eq!(row.status, "idle");
    file_into(
        &seller.address,
        "Junk",
        &delivery_report(&later, &seller, "4.2.2"),
    )
    .await?;
    let events = world.wait_events(4).await?;
    let soft_bounce = |e: &&domain::kafka::Envelope<EmailEvent>| {
        matches!(&e.body, EmailEvent::Bounced { message, hard: false, .. }
                 if message.message_id == later.message_id)
    };
    assert!(events.iter().any(|e| soft_bounce(&e)));
    world
        .wait_positions(seller.mailbox_id, "the third Junk email read", |rows| {
            last_uid(rows, "Junk") == Some(3) && last_uid(rows, "INBOX") == Some(1)
        })
        .await?;
    assert_eq!(
        seen_uids_in(&seller.address, "Junk").await?,
        Vec::<u32>::new()
    );
    first.stop().await?;

    // Another replica reads on from each folder's position: nothing is recorded again.
    let second = world.watcher().await?;
    world.wait_watched_by(seller.mailbox_id, &second).await?;
    deliver(
        &answered.contact,
        &seller.address,
        &reply(&answered, &seller, "One more thing"),
    )
    .await?;
    let events = world.wait_events(5).await?;
    world
        .wait_positions(seller.mailbox_id, "the new INBOX email read", |rows| {
            last_uid(rows, "INBOX") == Some(2) && last_uid(rows, "Junk") == Some(3)
        })
        .await?;
    let all = world.events().await?;
    assert_eq!(all.len(), 5, "{all:?}");
    let ids: HashSet<_> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 5);
    second.stop().await?;
    Ok(())
}

#[tokio::test]
async fn the_folders_setting_replaces_the_discovery() -> anyhow::Result<()> {
    let mut world = InboxWorld::new(false).await?;
    world.config.inbox_watcher.folders = vec![
        "INBOX".to_owned(),
        "Bounces".to_owned(),
        "Nowhere".to_owned(),
    ];
    let seller = world.seller().await?;
    let gone = world.sent(&seller, "Hello there").await?;
    let away = world.sent(&seller, "Quick question").await?;
    file_into(&seller.address, "Junk", &out_of_office(&away, &seller)).await?;
    file_into(
        &seller.address,
        "Bounces",
        &delivery_report(&gone, &seller, "5.1.1"),
    )
    .await?;

    let watcher = world.watcher().await?;
    let events = world.wait_events(1).await?;
    assert!(matches!(&events[0].body,
        EmailEvent::Bounced { message, .. } if message.message_id == gone.message_id));
    // A whole round over the folders is done once the watch waits again.
    world
        .wait_watch(seller.mailbox_id, "the mailbox watched", watching)
        .await?;
    let positions = world
        .wait_positions(seller.mailbox_id, "INBOX and Bounces read", |rows| {
            last_uid(rows, "Bounces") == Some(1) && last_uid(rows, "INBOX").is_some()
        })
        .await?;
    let folders: Vec<&str> = positions.iter().map(|p| p.folder.as_str()).collect();
    assert_eq!(
        folders,
        ["Bounces", "INBOX"],
        "Junk is not read, Nowhere is skipped"
    );
    // The watch keeps going (and stays healthy) although one configured folder is missing.
    deliver(
        &gone.contact,
        &seller.address,
        &reply(&gone, &seller, "Wrong address, try my colleague"),
    )
    .await?;
    let events = world.wait_events(2).await?;
    assert_eq!(
        events.len(),
        2,
        "the auto reply in Junk is not read: {events:?}"
    );
    assert!(matches!(&events[1].body, EmailEvent::Replied { .. }));
    watcher.stop().await?;
    Ok(())
}

#[tokio::test]
async fn the_same_report_in_inbox_and_junk_is_one_event() -> anyhow::Result<()> {
    let world = InboxWorld::new(false).await?;
    let seller = world.seller().await?;
    let gone = world.sent(&seller, "Hello there").await?;
    let report = delivery_report(&gone, &seller, "5.1.1");
    deliver(MAILER_DAEMON, &seller.address, &report).await?;
    file_into(&seller.address, "Junk", &report).await?;

    let watcher = world.watcher().await?;
    world
        .wait_positions(seller.mailbox_id, "both copies read", |rows| {
            last_uid(rows, "INBOX") == Some(1) && last_uid(rows, "Junk") == Some(1)
        })
        .await?;
    let events = world.wait_events(2).await?;
    // Both copies are recorded under one id, which the scheduler stores once.
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].id, events[1].id);
    assert!(matches!(&events[0].body,
        EmailEvent::Bounced { message, hard: true, .. } if message.message_id == gone.message_id));
    watcher.stop().await?;
    Ok(())
}
