//! What tests of the services that put mailboxes in `error` check of their announcement.

use std::time::Duration;

use anyhow::ensure;
use uuid::Uuid;

use super::{TestDatabase, count_records, read_topic};
use crate::config::Config;
use crate::kafka::TopicNames;

/// The mailbox's one `failing` record on `mailbox-events`: exactly one in the outbox (keep
/// published rows with `outbox.retention_seconds`) and on Kafka, keyed by the mailbox, its
/// envelope in `workspace_id`. Returns its `payload`.
pub async fn the_only_failing_event(
    db: &TestDatabase,
    config: &Config,
    mailbox_id: Uuid,
    workspace_id: Uuid,
    timeout: Duration,
) -> anyhow::Result<serde_json::Value> {
    let topic = TopicNames::from_config(&config.kafka).mailbox_events;
    let in_outbox = db
        .count(&format!(
            "SELECT count(*) AS n FROM outbox WHERE topic = '{topic}' \
               AND message_key = '{mailbox_id}' AND payload->>'type' = 'failing'"
        ))
        .await?;
    ensure!(in_outbox == 1, "{in_outbox} failing records in the outbox");
    let records = read_topic(&config.kafka, &topic, 1, timeout).await?;
    let published = count_records(&config.kafka, &topic).await?;
    ensure!(published == 1, "{published} records published on {topic}");
    let record = &records[0];
    ensure!(
        record.key.as_deref() == Some(mailbox_id.to_string().as_str()),
        "keyed {:?}",
        record.key
    );
    let mut event = record.payload_json()?;
    ensure!(event["type"] == "failing", "{event}");
    ensure!(event["workspace_id"] == workspace_id.to_string(), "{event}");
    Ok(event["payload"].take())
}
