//! Normal operation: every recorded event reaches each endpoint that wants it, once, signed,
//! one enrollment's events in order.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use domain::events::MailboxEvent;
use domain::testing::assert_healthy_and_ready;
use domain::testing::webhook_receiver::{WebhookReceiver, verify_all};
use serde_json::json;
use uuid::Uuid;

use crate::world::{World, enrollment_and_type, until_received};

#[tokio::test]
async fn recorded_events_arrive_once_signed_and_in_order_per_enrollment() -> anyhow::Result<()> {
    let world = World::new().await?;
    let everything = WebhookReceiver::start()?;
    let replies_only = WebhookReceiver::start()?;
    let elsewhere = WebhookReceiver::start()?;
    let all = world.endpoint(&everything.url(), &[]).await?;
    let replies = world
        .endpoint(&replies_only.url(), &["contact.replied"])
        .await?;
    let other = world.other_workspace().await?;
    world.endpoint_in(other, &elsewhere.url(), &[]).await?;
    let running = world.start()?;
    assert_healthy_and_ready(&format!("http://127.0.0.1:{}", running.admin_port)).await?;

    let enrollments: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
    let types = ["message.sent", "message.clicked", "contact.replied"];
    let mut recorded = Vec::new();
    for event_type in types {
        for enrollment in &enrollments {
            let more = json!({"url": "https://example.com/pricing", "is_bot": false});
            recorded.push(
                world
                    .record(world.workspace, *enrollment, event_type, more)
                    .await?,
            );
        }
    }

    let got = until_received(12, "12 events at the endpoint for everything", || {
        everything.received()
    })
    .await?;
    until_received(4, "4 replies at the replies-only endpoint", || {
        replies_only.received()
    })
    .await?;
    // Everything is recorded before it counts as done; by then nothing else may arrive.
    world.until_delivered(16, Duration::from_secs(10)).await?;
    let got_all = everything.received();
    assert_eq!(got_all.len(), 12, "each event once");
    assert_eq!(got, got_all);
    let ids: HashSet<&str> = got_all.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), 12, "one webhook-id per event");
    let replies_got = replies_only.received();
    assert_eq!(replies_got.len(), 4);
    assert!(
        replies_got
            .iter()
            .all(|r| r.json()["type"] == "contact.replied")
    );
    assert!(
        elsewhere.received().is_empty(),
        "another workspace's endpoint got nothing"
    );

    // One enrollment's events in the order they were recorded.
    let mut per_enrollment: HashMap<String, Vec<String>> = HashMap::new();
    for request in &got_all {
        let (enrollment, event_type) = enrollment_and_type(request);
        per_enrollment
            .entry(enrollment)
            .or_default()
            .push(event_type);
    }
    assert_eq!(per_enrollment.len(), 4);
    for order in per_enrollment.values() {
        assert_eq!(order, &types);
    }

    // The body as documented, the id the delivery's, the signature the library's.
    let first = &got_all[0];
    let body = first.json();
    assert_eq!(body["type"], "message.sent");
    assert!(body["timestamp"].is_string());
    assert_eq!(body["data"]["workspace_id"], world.workspace.to_string());
    let delivery = world
        .count(&format!(
            "SELECT count(*) AS n FROM webhook_deliveries \
              WHERE 'msg_' || replace(id::text, '-', '') = '{}' AND attempts = 1 \
                AND endpoint_id = '{}'",
            first.id, all.id
        ))
        .await?;
    assert_eq!(delivery, 1, "webhook-id is msg_ and the delivery's id");
    assert_eq!(
        world
            .count(
                "SELECT count(*) AS n FROM webhook_attempts \
                  WHERE status_code = 204 AND error IS NULL"
            )
            .await?,
        16
    );
    verify_all(&[all.secret_text()], &got_all)?;
    verify_all(&[replies.secret_text()], &replies_got)?;
    assert_eq!(recorded.len(), 12);

    running.stop().await?;
    Ok(())
}

#[tokio::test]
async fn during_a_rotation_both_secrets_sign_and_the_library_accepts_either() -> anyhow::Result<()>
{
    let world = World::new().await?;
    let receiver = WebhookReceiver::start()?;
    let before = world.endpoint(&receiver.url(), &[]).await?;
    let after = world.rotate(&before).await?;
    let running = world.start()?;
    world
        .record(world.workspace, Uuid::now_v7(), "message.sent", json!({}))
        .await?;
    let got = until_received(1, "the event", || receiver.received()).await?;
    assert_eq!(
        got[0].signature.split(' ').count(),
        2,
        "{}",
        got[0].signature
    );
    verify_all(&[after.secret_text()], &got)?;
    verify_all(&[before.secret_text()], &got)?;
    running.stop().await?;
    Ok(())
}

#[tokio::test]
async fn mailbox_events_and_deliveries_the_api_adds_are_sent() -> anyhow::Result<()> {
    let world = World::new().await?;
    let receiver = WebhookReceiver::start()?;
    let endpoint = world.endpoint(&receiver.url(), &[]).await?;
    let running = world.start()?;

    let mailbox_id = Uuid::now_v7();
    world
        .mailbox_event(MailboxEvent::ReconnectRequired {
            mailbox_id,
            provider: "google".to_owned(),
            reason: "the provider refused the grant (invalid_grant)".to_owned(),
        })
        .await?;
    let got = until_received(1, "mailbox.reconnect_required", || receiver.received()).await?;
    let body = got[0].json();
    assert_eq!(body["type"], "mailbox.reconnect_required");
    assert_eq!(body["data"]["mailbox"]["id"], mailbox_id.to_string());
    assert_eq!(body["data"]["provider"], "google");

    // What POST /webhooks/{id}/test inserts: a pending delivery due now.
    world
        .db
        .exec(&format!(
            "INSERT INTO webhook_deliveries (id, endpoint_id, workspace_id, event_id, \
                 event_type, payload, occurred_at, next_attempt_at) \
             VALUES (gen_random_uuid(), '{}', '{}', gen_random_uuid(), 'webhook.test', \
                 '{{\"type\":\"webhook.test\",\"data\":{{}}}}', now(), now())",
            endpoint.id, world.workspace
        ))
        .await?;
    let got = until_received(2, "webhook.test", || receiver.received()).await?;
    assert_eq!(got[1].json()["type"], "webhook.test");
    verify_all(&[endpoint.secret_text()], &got)?;
    running.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_burst_beyond_the_lanes_room_is_sent_as_they_drain() -> anyhow::Result<()> {
    let world = World::new().await?;
    let receiver = WebhookReceiver::start()?;
    world.endpoint(&receiver.url(), &[]).await?;
    let mut config = world.config.clone();
    // Room for 4 in memory; a lease no test waits out, so only the hand-back can bring the
    // rest.
    config.webhooks.concurrency_per_endpoint = 2;
    config.webhooks.queue_per_endpoint = 4;
    config.webhooks.lease_seconds = 600;
    config.webhooks.poll_interval_ms = 60_000;
    let running = world.start_with(config)?;
    for _ in 0..300 {
        world
            .record(world.workspace, Uuid::now_v7(), "message.sent", json!({}))
            .await?;
    }
    world
        .until_delivered(300, std::time::Duration::from_secs(30))
        .await?;
    let ids: HashSet<String> = receiver.received().into_iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), 300);
    assert_eq!(receiver.received().len(), 300, "each once");
    running.stop().await?;
    Ok(())
}
