//! Answers, automatic answers and bounces arriving in a watched mailbox become the events
//! they mean, once each; other mail yields nothing and stays unread.

use domain::events::EmailEvent;

const MAILER_DAEMON: &str = "mailer-daemon@mx.prospect.test";

use crate::world::{InboxWorld, deliver, delivery_report, email, reply, seen_uids, watching};

#[tokio::test]
async fn a_reply_seen_through_idle_becomes_one_replied_event_and_stays_unread() -> anyhow::Result<()>
{
    let world = InboxWorld::new(true).await?;
    let seller = world.seller().await?;
    let sent = world.sent(&seller, "Quick question").await?;
    let watcher = world.watcher().await?;
    let row = world
        .wait_watch(seller.mailbox_id, "the mailbox watched", watching)
        .await?;
    assert_eq!(row.status, "idle", "GreenMail offers IDLE");
    assert_eq!(row.owner.as_deref(), Some(watcher.owner.as_str()));

    deliver(
        &sent.contact,
        &seller.address,
        &reply(&sent, &seller, "Sounds good, call me"),
    )
    .await?;
    let events = world.wait_events(1).await?;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].workspace_id, world.workspace_id);
    match &events[0].body {
        EmailEvent::Replied { message, inbound } => {
            assert_eq!(message.message_id, sent.message_id);
            assert_eq!(message.enrollment_id, sent.enrollment_id);
            assert_eq!(inbound.from.as_deref(), Some(sent.contact.as_str()));
            assert_eq!(inbound.subject.as_deref(), Some("Re: Quick question"));
            assert!(
                inbound
                    .inbound_message_id
                    .as_deref()
                    .is_some_and(|id| id.starts_with("<reply-"))
            );
        }
        other => anyhow::bail!("expected a reply, got {other:?}"),
    }
    let row = world
        .wait_watch(seller.mailbox_id, "the position stored", |row| {
            row.last_uid == 1
        })
        .await?;
    assert_eq!(row.consecutive_failures, 0);
    assert_eq!(seen_uids(&seller.address).await?, Vec::<u32>::new());
    watcher.stop().await?;
    Ok(())
}

#[tokio::test]
async fn mail_that_arrived_before_the_watcher_is_read_once_and_other_mail_is_ignored()
-> anyhow::Result<()> {
    let world = InboxWorld::new(false).await?;
    let seller = world.seller().await?;
    let sent = world.sent(&seller, "Intro").await?;
    // A newsletter, a stranger's question with our subject, and the seller's own copy.
    deliver(
        "news@shop.test",
        &seller.address,
        &email("news@shop.test", &seller.address, "Deals", "", "50% off"),
    )
    .await?;
    deliver(
        "stranger@else.test",
        &seller.address,
        &email(
            "stranger@else.test",
            &seller.address,
            "Re: Intro",
            "",
            "Who are you?",
        ),
    )
    .await?;
    deliver(
        &seller.address,
        &seller.address,
        &email(
            &seller.address,
            &seller.address,
            "Re: Intro",
            "",
            "note to self",
        ),
    )
    .await?;
    deliver(
        &sent.contact,
        &seller.address,
        &reply(&sent, &seller, "Yes"),
    )
    .await?;

    let first = world.watcher().await?;
    world
        .wait_watch(seller.mailbox_id, "all four emails read", |row| {
            row.last_uid == 4 && watching(row)
        })
        .await?;
    let events = world.events().await?;
    assert_eq!(
        events.len(),
        1,
        "only the reply is about our mail: {events:?}"
    );
    assert!(
        matches!(&events[0].body, EmailEvent::Replied { message, .. }
        if message.message_id == sent.message_id)
    );
    first.stop().await?;

    // Another replica reads on from the stored position: nothing again.
    let second = world.watcher().await?;
    world.wait_watched_by(seller.mailbox_id, &second).await?;
    deliver(
        &sent.contact,
        &seller.address,
        &reply(&sent, &seller, "Also: Tuesday?"),
    )
    .await?;
    let events = world.wait_events(2).await?;
    assert_eq!(events.len(), 2);
    assert_ne!(events[0].id, events[1].id);
    second.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_reply_without_references_is_matched_by_sender_and_thread_subject() -> anyhow::Result<()>
{
    let world = InboxWorld::new(true).await?;
    let seller = world.seller().await?;
    let other = world.sent(&seller, "Pricing").await?;
    let sent = world.sent(&seller, "Meeting next week").await?;
    let watcher = world.watcher().await?;
    world
        .wait_watch(seller.mailbox_id, "the mailbox watched", watching)
        .await?;
    // A client that dropped In-Reply-To and References, and stacked prefixes.
    deliver(
        &sent.contact,
        &seller.address,
        &email(
            &sent.contact,
            &seller.address,
            "AW: RE: Meeting next week",
            "",
            "Thursday works",
        ),
    )
    .await?;
    let events = world.wait_events(1).await?;
    match &events[0].body {
        EmailEvent::Replied { message, .. } => {
            assert_eq!(message.message_id, sent.message_id);
            assert_ne!(message.message_id, other.message_id);
        }
        other => anyhow::bail!("expected a reply, got {other:?}"),
    }
    watcher.stop().await?;
    Ok(())
}

#[tokio::test]
async fn an_out_of_office_answer_is_an_auto_reply() -> anyhow::Result<()> {
    let world = InboxWorld::new(true).await?;
    let seller = world.seller().await?;
    let sent = world.sent(&seller, "Quick question").await?;
    let watcher = world.watcher().await?;
    world
        .wait_watch(seller.mailbox_id, "the mailbox watched", watching)
        .await?;
    let headers = format!(
        "In-Reply-To: {id}\r\nReferences: {id}\r\nAuto-Submitted: auto-replied\r\n\
         X-Auto-Response-Suppress: All\r\n",
        id = sent.message_id_header
    );
    deliver(
        &sent.contact,
        &seller.address,
        &email(
            &sent.contact,
            &seller.address,
            "Automatic reply: Quick question",
            &headers,
            "I am out of the office until Monday.",
        ),
    )
    .await?;
    let events = world.wait_events(1).await?;
    match &events[0].body {
        EmailEvent::AutoReplied {
            message, reason, ..
        } => {
            assert_eq!(message.message_id, sent.message_id);
            assert!(reason.contains("Auto-Submitted"), "reason: {reason}");
        }
        other => anyhow::bail!("expected an auto reply, got {other:?}"),
    }
    watcher.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_failure_report_is_a_hard_bounce_and_a_delay_report_a_soft_one() -> anyhow::Result<()> {
    let world = InboxWorld::new(false).await?;
    let seller = world.seller().await?;
    let gone = world.sent(&seller, "Hello there").await?;
    let full = world.sent(&seller, "Hello there").await?;
    deliver(
        MAILER_DAEMON,
        &seller.address,
        &delivery_report(&gone, &seller, "5.1.1"),
    )
    .await?;
    deliver(
        MAILER_DAEMON,
        &seller.address,
        &delivery_report(&full, &seller, "4.2.2"),
    )
    .await?;
    let watcher = world.watcher().await?;
    let events = world.wait_events(2).await?;
    assert_eq!(events.len(), 2);
    let bounce_of = |message_id| {
        events.iter().find_map(|e| match &e.body {
            EmailEvent::Bounced {
                message,
                hard,
                diagnostic,
            } if message.message_id == message_id => Some((*hard, diagnostic.clone())),
            _ => None,
        })
    };
    let (hard, diagnostic) = bounce_of(gone.message_id)
        .ok_or_else(|| anyhow::anyhow!("no bounce for the failed recipient: {events:?}"))?;
    assert!(hard);
    assert!(
        diagnostic.as_deref().is_some_and(|d| d.contains("5.1.1")),
        "{diagnostic:?}"
    );
    let (hard, _) = bounce_of(full.message_id)
        .ok_or_else(|| anyhow::anyhow!("no bounce for the delayed recipient: {events:?}"))?;
    assert!(!hard);
    watcher.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_renumbered_folder_is_read_again_without_new_events_for_old_mail() -> anyhow::Result<()> {
    let world = InboxWorld::new(false).await?;
    let seller = world.seller().await?;
    let sent = world.sent(&seller, "Quick question").await?;
    deliver(
        &sent.contact,
        &seller.address,
        &reply(&sent, &seller, "First"),
    )
    .await?;
    let first = world.watcher().await?;
    let before = world.wait_events(1).await?;
    world
        .wait_watch(seller.mailbox_id, "the first email read", |row| {
            row.last_uid == 1 && watching(row)
        })
        .await?;
    first.stop().await?;

    // As if the server had renumbered the folder (a restored or recreated mailbox): the
    // stored UIDVALIDITY no longer matches, and the stored UID means nothing.
    world
        .db
        .exec(&format!(
            "UPDATE inbox_folder_positions SET uid_validity = 1, last_uid = 999 \
              WHERE mailbox_id = '{}' AND folder = 'INBOX'",
            seller.mailbox_id
        ))
        .await?;
    deliver(
        &sent.contact,
        &seller.address,
        &reply(&sent, &seller, "Second"),
    )
    .await?;
    let second = world.watcher().await?;
    world
        .wait_watch(seller.mailbox_id, "the folder read again", |row| {
            row.last_uid == 2 && watching(row)
        })
        .await?;
    let events = world.events().await?;
    // The first email is recorded again under the same id (the scheduler stores it once);
    // only the second email is news.
    let ids: std::collections::HashSet<_> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 2, "{events:?}");
    assert!(ids.contains(&before[0].id));
    second.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_feedback_loop_report_is_a_complaint_about_the_reported_message() -> anyhow::Result<()> {
    let world = InboxWorld::new(false).await?;
    let seller = world.seller().await?;
    let sent = world.sent(&seller, "Quick question").await?;
    let report = format!(
        "From: <feedback@fbl.provider.test>\r\nTo: <{seller}>\r\nSubject: Abuse report\r\n\
         Message-ID: <arf-{id}@fbl.provider.test>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=feedback-report; boundary=\"arf\"\r\n\r\n\
         --arf\r\nContent-Type: text/plain\r\n\r\nA recipient marked this message as spam.\r\n\
         --arf\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n\
         Version: 1\r\nOriginal-Rcpt-To: <{contact}>\r\n\r\n\
         --arf\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: <{seller}>\r\n\
         To: <{contact}>\r\nMessage-ID: {header}\r\n\r\n--arf--\r\n",
        seller = seller.address,
        contact = sent.contact,
        header = sent.message_id_header,
        id = uuid::Uuid::new_v4().simple(),
    );
    deliver("feedback@fbl.provider.test", &seller.address, &report).await?;
    let watcher = world.watcher().await?;
    let events = world.wait_events(1).await?;
    match &events[0].body {
        EmailEvent::Complained { message } => assert_eq!(message.message_id, sent.message_id),
        other => anyhow::bail!("expected a complaint, got {other:?}"),
    }
    watcher.stop().await?;
    Ok(())
}
