//! Receivers that fail: retried on the schedule until they recover, nothing lost; a hanging
//! one holds back only itself; 410 Gone and days of failures disable the endpoint.

use std::collections::HashSet;
use std::time::Duration;

use domain::testing::poll_until;
use domain::testing::webhook_receiver::{Answer, WebhookReceiver, verify_all};
use serde_json::json;
use uuid::Uuid;

use crate::world::{World, until_received};

const EVENTS: usize = 5;

async fn attempts_where(world: &World, condition: &str) -> anyhow::Result<i64> {
    world
        .count(&format!(
            "SELECT count(*) AS n FROM webhook_attempts WHERE {condition}"
        ))
        .await
}

#[tokio::test]
async fn a_receiver_that_fails_then_is_down_gets_every_event_once_it_recovers() -> anyhow::Result<()>
{
    let world = World::new().await?;
    let mut receiver = WebhookReceiver::start()?;
    receiver.answer(Answer::Status(500));
    let endpoint = world.endpoint(&receiver.url(), &[]).await?;
    let running = world.start()?;
    let enrollment = Uuid::now_v7();
    let mut events = HashSet::new();
    for _ in 0..EVENTS {
        let envelope = world
            .record(world.workspace, enrollment, "message.opened", json!({}))
            .await?;
        events.insert(envelope.id.to_string());
    }

    poll_until(
        Duration::from_secs(30),
        "a 500 logged for every delivery",
        || async {
            attempts_where(&world, "status_code = 500")
                .await
                .ok()
                .filter(|n| *n >= EVENTS as i64)
        },
    )
    .await?;
    receiver.down().await;
    poll_until(
        Duration::from_secs(30),
        "refused connections logged",
        || async {
            attempts_where(&world, "status_code IS NULL AND error IS NOT NULL")
                .await
                .ok()
                .filter(|n| *n >= 1)
        },
    )
    .await?;
    receiver.answer(Answer::Status(200));
    receiver.up()?;

    world
        .until_delivered(EVENTS as i64, Duration::from_secs(30))
        .await?;
    let got = receiver.received();
    let delivered: HashSet<String> = got
        .iter()
        .filter_map(|r| r.json()["data"]["message_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(delivered.len(), EVENTS, "every event arrived");
    // Every attempt of one event carried the same webhook-id.
    let ids: HashSet<&str> = got.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), EVENTS);
    verify_all(&[endpoint.secret_text()], &got)?;
    let failing_since = world
        .count("SELECT count(*) AS n FROM webhook_endpoints WHERE failing_since IS NULL")
        .await?;
    assert_eq!(failing_since, 1, "a success clears the failing period");
    running.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_hanging_endpoint_does_not_hold_back_another() -> anyhow::Result<()> {
    let world = World::new().await?;
    let hanging = WebhookReceiver::start()?;
    hanging.answer(Answer::Hang);
    let fast = WebhookReceiver::start()?;
    world.endpoint(&hanging.url(), &[]).await?;
    world.endpoint(&fast.url(), &[]).await?;
    let mut config = world.config.clone();
    // Long enough that the fast endpoint's deliveries could only beat it by not waiting.
    config.webhooks.request_timeout_ms = 20_000;
    config.webhooks.lease_seconds = 60;
    let running = world.start_with(config)?;
    for _ in 0..40 {
        world
            .record(world.workspace, Uuid::now_v7(), "message.sent", json!({}))
            .await?;
    }
    until_received(1, "the hanging endpoint's first request", || {
        hanging.received()
    })
    .await?;
    until_received(40, "every event at the fast endpoint", || fast.received()).await?;
    // The hanging endpoint's lanes are all held; none of its attempts has ended yet.
    assert_eq!(attempts_where(&world, "status_code IS NULL").await?, 0);
    poll_until(
        Duration::from_secs(10),
        "the fast deliveries recorded",
        || async {
            attempts_where(&world, "status_code = 204")
                .await
                .ok()
                .filter(|n| *n == 40)
        },
    )
    .await?;
    // Answered at last (503), so the stopping service's lanes finish their attempts.
    drop(hanging);
    running.stop().await?;
    Ok(())
}

#[tokio::test]
async fn gone_disables_the_endpoint_and_the_workspace_hears_of_it() -> anyhow::Result<()> {
    let world = World::new().await?;
    let gone = WebhookReceiver::start()?;
    gone.answer(Answer::Status(410));
    let watcher = WebhookReceiver::start()?;
    let endpoint = world.endpoint(&gone.url(), &["message.sent"]).await?;
    world
        .endpoint(&watcher.url(), &["webhook.disabled"])
        .await?;
    let running = world.start()?;
    world
        .record(world.workspace, Uuid::now_v7(), "message.sent", json!({}))
        .await?;
    let got = until_received(1, "webhook.disabled", || watcher.received()).await?;
    let body = got[0].json();
    assert_eq!(body["type"], "webhook.disabled");
    assert_eq!(body["data"]["webhook_id"], endpoint.id.to_string());
    assert_eq!(body["data"]["reason"], "the endpoint answered 410 Gone");
    assert_eq!(
        world
            .count(&format!(
                "SELECT count(*) AS n FROM webhook_endpoints WHERE id = '{}' \
                   AND NOT enabled AND disabled_reason = 'the endpoint answered 410 Gone'",
                endpoint.id
            ))
            .await?,
        1
    );
    // Its delivery waits, pending and parked, for the endpoint to be enabled again.
    let parked = "SELECT count(*) AS n FROM webhook_deliveries WHERE status = 'pending' \
                  AND event_type = 'message.sent' AND next_attempt_at IS NULL";
    poll_until(Duration::from_secs(10), "the delivery parked", || async {
        world.count(parked).await.ok().filter(|n| *n == 1)
    })
    .await?;
    // Enabled again (as PUT does), it goes.
    gone.answer(Answer::Status(200));
    let mut conn = world.connect().await?;
    world
        .db
        .exec(&format!(
            "UPDATE webhook_endpoints SET enabled = true, disabled_reason = NULL WHERE id = '{}'",
            endpoint.id
        ))
        .await?;
    domain::db::webhook_deliveries::unpark_pending(&mut conn, endpoint.id).await?;
    world.until_delivered(2, Duration::from_secs(10)).await?;
    let got = gone.received();
    assert_eq!(got.len(), 2, "the 410, then the delivery once enabled");
    assert_eq!(got[0].id, got[1].id);
    running.stop().await?;
    Ok(())
}

#[tokio::test]
async fn an_endpoint_failing_for_days_is_disabled_and_retries_run_out() -> anyhow::Result<()> {
    let world = World::new().await?;
    let failing = WebhookReceiver::start()?;
    failing.answer(Answer::Status(503));
    let broken = WebhookReceiver::start()?;
    broken.answer(Answer::Status(500));
    let old = world.endpoint(&failing.url(), &[]).await?;
    let young = world.endpoint(&broken.url(), &[]).await?;
    world
        .db
        .exec(&format!(
            "UPDATE webhook_endpoints SET failing_since = now() - interval '121 hours' \
              WHERE id = '{}'",
            old.id
        ))
        .await?;
    let running = world.start()?;
    world
        .record(
            world.workspace,
            Uuid::now_v7(),
            "contact.replied",
            json!({}),
        )
        .await?;
    poll_until(
        Duration::from_secs(30),
        "the old failure disabled",
        || async {
            world
                .count(&format!(
                    "SELECT count(*) AS n FROM webhook_endpoints WHERE id = '{}' AND NOT enabled \
                   AND disabled_reason = 'every delivery failed for 120 hours'",
                    old.id
                ))
                .await
                .ok()
                .filter(|n| *n == 1)
        },
    )
    .await?;
    // Five retries after the first attempt, then failed.
    poll_until(
        Duration::from_secs(30),
        "the young one's delivery failed",
        || async {
            world
                .count(&format!(
                    "SELECT count(*) AS n FROM webhook_deliveries WHERE endpoint_id = '{}' \
                   AND event_type = 'contact.replied' AND status = 'failed' AND attempts = 6 \
                   AND next_attempt_at IS NULL",
                    young.id
                ))
                .await
                .ok()
                .filter(|n| *n == 1)
        },
    )
    .await?;
    // (It also hears of the old one's disabling, and fails that too.)
    let replies = broken
        .received()
        .iter()
        .filter(|r| r.json()["type"] == "contact.replied")
        .count();
    assert_eq!(replies, 6);
    let enabled = world
        .count(&format!(
            "SELECT count(*) AS n FROM webhook_endpoints WHERE id = '{}' AND enabled \
               AND failing_since IS NOT NULL",
            young.id
        ))
        .await?;
    assert_eq!(enabled, 1, "a young failure only starts the failing period");
    running.stop().await?;
    Ok(())
}
