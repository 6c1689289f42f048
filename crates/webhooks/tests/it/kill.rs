//! The service SIGKILLed mid-delivery and started again: every event arrives at least once,
//! and an event that arrives twice carries the same `webhook-id` both times.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use domain::testing::poll_until;
use domain::testing::process_stats::service_command;
use domain::testing::webhook_receiver::{WebhookReceiver, verify_all};
use serde_json::json;
use uuid::Uuid;

use crate::world::World;

const EVENTS: usize = 400;

fn service(world: &World) -> anyhow::Result<tokio::process::Child> {
    let settings = &world.config.webhooks;
    Ok(
        service_command(env!("CARGO_BIN_EXE_webhooks"), &world.config)
            .env("SEQ_WEBHOOKS__ADMIN_BIND", "127.0.0.1:0")
            .env(
                "SEQ_WEBHOOKS__LEASE_SECONDS",
                settings.lease_seconds.to_string(),
            )
            .env(
                "SEQ_WEBHOOKS__REQUEST_TIMEOUT_MS",
                settings.request_timeout_ms.to_string(),
            )
            .env(
                "SEQ_WEBHOOKS__POLL_INTERVAL_MS",
                settings.poll_interval_ms.to_string(),
            )
            // Small lanes, so the kill finds deliveries queued, in flight and unrecorded.
            .env("SEQ_WEBHOOKS__CONCURRENCY_PER_ENDPOINT", "2")
            .env("SEQ_WEBHOOKS__RECORD_WAIT_MS", "200")
            .env("SEQ_TELEMETRY__LOG_FORMAT", "pretty")
            .spawn()?,
    )
}

#[tokio::test]
async fn a_service_killed_mid_delivery_loses_nothing_and_repeats_only_with_the_same_id()
-> anyhow::Result<()> {
    let world = World::new().await?;
    let receiver = WebhookReceiver::start()?;
    let endpoint = world.endpoint(&receiver.url(), &[]).await?;
    let mut doomed = service(&world)?;
    let mut events = HashSet::new();
    for _ in 0..EVENTS {
        let envelope = world
            .record(world.workspace, Uuid::now_v7(), "message.sent", json!({}))
            .await?;
        events.insert(envelope.body.data["message_id"].to_string());
    }
    poll_until(
        Duration::from_secs(60),
        "a first share delivered",
        || async { (receiver.received().len() >= 50).then_some(()) },
    )
    .await?;
    doomed.start_kill()?;
    doomed.wait().await?;
    let at_kill = receiver.received().len();
    assert!(at_kill < EVENTS, "the kill came too late to test anything");

    let mut restarted = service(&world)?;
    world
        .until_delivered(EVENTS as i64, Duration::from_secs(90))
        .await?;
    let got = receiver.received();
    let mut ids_of_event: HashMap<String, HashSet<String>> = HashMap::new();
    for request in &got {
        ids_of_event
            .entry(request.json()["data"]["message_id"].to_string())
            .or_default()
            .insert(request.id.clone());
    }
    assert_eq!(
        ids_of_event.keys().cloned().collect::<HashSet<_>>(),
        events,
        "every event arrived"
    );
    assert!(
        ids_of_event.values().all(|ids| ids.len() == 1),
        "an event sent twice carries one webhook-id"
    );
    verify_all(&[endpoint.secret_text()], &got)?;
    restarted.start_kill()?;
    restarted.wait().await?;
    Ok(())
}
