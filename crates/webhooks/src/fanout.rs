//! Fans the topics' events out to the endpoints that want them: a batch of records becomes
//! one insert of deliveries (one per event and endpoint; one already there is skipped, so a
//! record read twice is delivered once), then the new deliveries go straight into their
//! endpoints' lanes, leased to this replica. Offsets are stored only after the insert, so a
//! replica dying before it loses nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use domain::clock::Clock;
use domain::config::KafkaConfig;
use domain::db::PgPool;
use domain::db::webhook_dispatch::{self, NewDelivery};
use domain::db::webhook_endpoints::WebhookEndpoint;
use domain::events::{MailboxEvent, WebhookEvent};
use domain::kafka::Envelope;
use domain::kafka::consumer::stored_offsets_consumer;
use domain::webhooks::event_types;
use hyper::body::Bytes;
use rdkafka::Message as _;
use rdkafka::consumer::{CommitMode, Consumer as _};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::events::Event;
use crate::lanes::{Dispatcher, Queued};
use crate::targets::Targets;

/// The consumer group of every replica (without the environment's prefix).
pub const CONSUMER_GROUP: &str = "webhooks";

/// The deliveries of `events` to those of `endpoints` that want them, due at `due`: each
/// with its event.
pub fn plan<'a>(
    events: &'a [Event],
    endpoints: &[WebhookEndpoint],
    due: DateTime<Utc>,
) -> Vec<(&'a Event, NewDelivery)> {
    let mut by_workspace: HashMap<Uuid, Vec<&WebhookEndpoint>> = HashMap::new();
    for endpoint in endpoints.iter().filter(|e| e.enabled) {
        by_workspace
            .entry(endpoint.workspace_id)
            .or_default()
            .push(endpoint);
    }
    let mut planned = Vec::new();
    for event in events {
        let body = event.body();
        for endpoint in by_workspace.get(&event.workspace_id).into_iter().flatten() {
            // `webhook.test` goes only to the endpoint tested (the API inserts it).
            if event.event_type == "webhook.test"
                || !event_types::wants(&endpoint.event_types, &event.event_type)
            {
                continue;
            }
            planned.push((
                event,
                NewDelivery {
                    id: Uuid::now_v7(),
                    endpoint_id: endpoint.id,
                    workspace_id: event.workspace_id,
                    event_id: event.id,
                    event_type: event.event_type.clone(),
                    payload: body.clone(),
                    occurred_at: event.occurred_at,
                    next_attempt_at: due,
                },
            ));
        }
    }
    planned
}

pub struct Fanout {
    pub pool: PgPool,
    pub kafka: KafkaConfig,
    pub topics: Topics,
    pub clock: Arc<dyn Clock>,
    pub dispatcher: Arc<Dispatcher>,
    pub targets: Arc<Targets>,
    pub lease: chrono::Duration,
    pub batch: usize,
    pub wait: Duration,
}

#[derive(Debug, Clone)]
pub struct Topics {
    pub webhook_events: String,
    pub mailbox_events: String,
}

/// A record read, before it is decoded.
struct Read {
    topic: String,
    partition: i32,
    offset: i64,
    payload: Vec<u8>,
}

/// What a record is for the fan-out.
enum Decoded {
    Recorded(Envelope<WebhookEvent>),
    Mailbox(Envelope<MailboxEvent>),
}

impl Fanout {
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let group = format!("{}{CONSUMER_GROUP}", self.kafka.topic_prefix);
        let consumer = stored_offsets_consumer(&self.kafka, &group)?;
        consumer.subscribe(&[
            self.topics.webhook_events.as_str(),
            self.topics.mailbox_events.as_str(),
        ])?;
        tracing::info!(kafka.group = %group, "webhooks consuming");
        loop {
            let first = tokio::select! {
                () = shutdown.cancelled() => break,
                record = consumer.recv() => record,
            };
            let mut batch = Vec::with_capacity(self.batch);
            let push =
                |batch: &mut Vec<Read>,
                 record: Result<rdkafka::message::BorrowedMessage<'_>, _>| {
                    match record {
                        Ok(message) => batch.push(Read {
                            topic: message.topic().to_owned(),
                            partition: message.partition(),
                            offset: message.offset(),
                            payload: message.payload().unwrap_or_default().to_vec(),
                        }),
                        Err(error) => {
                            tracing::warn!(%error, "kafka receive failed");
                            metrics::counter!("kafka_consume_errors_total", "group" => CONSUMER_GROUP)
                        .increment(1);
                        }
                    }
                };
            push(&mut batch, first);
            let deadline = tokio::time::Instant::now() + self.wait;
            loop {
                match tokio::time::timeout_at(deadline, consumer.recv()).await {
                    Ok(record) => push(&mut batch, record),
                    Err(_) => break,
                }
                if batch.len() >= self.batch {
                    break;
                }
            }
            let mut delay = Duration::from_millis(100);
            loop {
                match self.fan_out(&batch).await {
                    Ok(()) => break,
                    Err(error) => {
                        tracing::error!(
                            error = format!("{error:#}"),
                            "fanning webhook events out failed; retrying"
                        );
                        tokio::select! {
                            () = shutdown.cancelled() => return Ok(()),
                            () = tokio::time::sleep(delay) => {}
                        }
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
            store_offsets(&consumer, &batch);
        }
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(())
            | Err(rdkafka::error::KafkaError::ConsumerCommit(
                rdkafka::types::RDKafkaErrorCode::NoOffset,
            )) => {}
            Err(error) => tracing::warn!(%error, "final offset commit failed"),
        }
        tracing::info!("webhooks stopped consuming");
        Ok(())
    }

    fn decode(&self, read: &Read) -> Option<Decoded> {
        let decoded = if read.topic == self.topics.webhook_events {
            Envelope::<WebhookEvent>::from_json(&read.payload).map(Decoded::Recorded)
        } else {
            Envelope::<MailboxEvent>::from_json(&read.payload).map(Decoded::Mailbox)
        };
        match decoded {
            Ok(decoded) => Some(decoded),
            Err(error) => {
                // Retrying cannot fix a record we cannot read; skip it loudly.
                tracing::error!(%error, kafka.topic = %read.topic, kafka.partition = read.partition,
                                kafka.offset = read.offset, "skipping unreadable record");
                metrics::counter!("kafka_unreadable_records_total", "topic" => read.topic.clone())
                    .increment(1);
                None
            }
        }
    }

    /// Inserts the batch's deliveries and queues those that are new.
    async fn fan_out(&self, batch: &[Read]) -> anyhow::Result<()> {
        let decoded: Vec<Decoded> = batch.iter().filter_map(|r| self.decode(r)).collect();
        let mut conn = self.pool.get().await.context("database connection")?;
        let mailbox_ids: Vec<Uuid> = decoded
            .iter()
            .filter_map(|d| match d {
                Decoded::Mailbox(envelope) => Some(envelope.body.mailbox_id()),
                Decoded::Recorded(_) => None,
            })
            .collect();
        let addresses: HashMap<Uuid, String> = if mailbox_ids.is_empty() {
            HashMap::new()
        } else {
            webhook_dispatch::mailbox_addresses(&mut conn, &mailbox_ids)
                .await?
                .into_iter()
                .collect()
        };
        let events: Vec<Event> = decoded
            .into_iter()
            .filter_map(|d| match d {
                Decoded::Recorded(envelope) => Some(Event::recorded(envelope)),
                Decoded::Mailbox(envelope) => {
                    let email = addresses.get(&envelope.body.mailbox_id());
                    Event::of_mailbox(&envelope, email.map(String::as_str))
                }
            })
            .filter(|e| event_types::is_known(&e.event_type))
            .collect();
        metrics::counter!("webhook_events_total").increment(events.len() as u64);
        if events.is_empty() {
            return Ok(());
        }
        let mut workspaces: Vec<Uuid> = events.iter().map(|e| e.workspace_id).collect();
        workspaces.sort_unstable();
        workspaces.dedup();
        let endpoints = webhook_dispatch::enabled_endpoints(&mut conn, &workspaces).await?;
        if endpoints.is_empty() {
            return Ok(());
        }
        let now = self.clock.now();
        let lease_until = now + self.lease;
        let planned = plan(&events, &endpoints, lease_until);
        let deliveries: Vec<NewDelivery> = planned.iter().map(|(_, d)| d.clone()).collect();
        let inserted: std::collections::HashSet<Uuid> =
            webhook_dispatch::insert_deliveries(&mut conn, &deliveries)
                .await?
                .into_iter()
                .collect();
        drop(conn);
        metrics::counter!("webhook_deliveries_created_total").increment(inserted.len() as u64);
        let endpoints: HashMap<Uuid, &WebhookEndpoint> =
            endpoints.iter().map(|e| (e.id, e)).collect();
        let mut refused = Vec::new();
        for (event, delivery) in planned {
            if !inserted.contains(&delivery.id) {
                continue;
            }
            let Some(target) = endpoints
                .get(&delivery.endpoint_id)
                .and_then(|e| self.targets.of(e))
            else {
                continue;
            };
            let queued = self.dispatcher.offer(Queued {
                delivery_id: delivery.id,
                target,
                payload: Bytes::from(delivery.payload),
                occurred_at: delivery.occurred_at,
                lease_until,
                order_key: event.order_key,
            });
            if !queued {
                refused.push(delivery.id);
            }
        }
        if !refused.is_empty() {
            release(&self.pool, &refused, now).await;
            self.dispatcher.handed_back();
        }
        Ok(())
    }
}

/// Hands deliveries the lanes refused (full) back as due now, for a poll to bring when
/// there is room, instead of leaving them leased. Failing that, their lease runs out.
pub async fn release(pool: &PgPool, refused: &[Uuid], now: DateTime<Utc>) {
    if refused.is_empty() {
        return;
    }
    metrics::counter!("webhook_deliveries_refused_total").increment(refused.len() as u64);
    let released = match pool.get().await {
        Ok(mut conn) => webhook_dispatch::release(&mut conn, refused, now)
            .await
            .map_err(anyhow::Error::from),
        Err(error) => Err(anyhow::Error::from(error)),
    };
    if let Err(error) = released {
        tracing::warn!(
            error = format!("{error:#}"),
            count = refused.len(),
            "deliveries the lanes refused wait for their lease instead"
        );
    }
}

/// Stores the offsets after the batch's records (the whole batch was handled); a partition
/// lost in a rebalance is read again by its new owner, which finds the deliveries there.
fn store_offsets(consumer: &rdkafka::consumer::StreamConsumer, batch: &[Read]) {
    domain::kafka::store_offsets_after(
        consumer,
        batch
            .iter()
            .map(|r| (r.topic.as_str(), r.partition, r.offset)),
    );
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn endpoint(workspace: u128, id: u128, types: &[&str], enabled: bool) -> WebhookEndpoint {
        let at = DateTime::<Utc>::UNIX_EPOCH;
        WebhookEndpoint {
            id: Uuid::from_u128(id),
            workspace_id: Uuid::from_u128(workspace),
            url: "https://example.com/hook".to_owned(),
            description: None,
            event_types: types.iter().map(|t| (*t).to_owned()).collect(),
            enabled,
            disabled_reason: None,
            secret_encrypted: Vec::new(),
            previous_secret_encrypted: None,
            previous_secret_expires_at: None,
            failing_since: None,
            created_at: at,
            updated_at: at,
        }
    }

    fn event(workspace: u128, id: u128, event_type: &str) -> Event {
        Event {
            id: Uuid::from_u128(id),
            workspace_id: Uuid::from_u128(workspace),
            event_type: event_type.to_owned(),
            occurred_at: DateTime::<Utc>::UNIX_EPOCH,
            data: json!({}),
            order_key: Uuid::from_u128(id),
        }
    }

    #[test]
    fn each_event_goes_to_its_own_workspace_s_enabled_endpoints_that_want_it() {
        let endpoints = [
            endpoint(1, 10, &[], true),
            endpoint(1, 11, &["contact.replied"], true),
            endpoint(1, 12, &[], false),
            endpoint(2, 20, &[], true),
        ];
        let events = [
            event(1, 100, "message.sent"),
            event(1, 101, "contact.replied"),
            event(2, 102, "webhook.test"),
        ];
        let planned: Vec<(u128, u128)> = plan(&events, &endpoints, DateTime::UNIX_EPOCH)
            .iter()
            .map(|(e, d)| (e.id.as_u128(), d.endpoint_id.as_u128()))
            .collect();
        assert_eq!(planned, [(100, 10), (101, 10), (101, 11)]);
    }

    #[test]
    fn a_delivery_carries_its_event_and_the_body() -> anyhow::Result<()> {
        let endpoints = [endpoint(1, 10, &[], true)];
        let events = [event(1, 100, "message.sent")];
        let planned = plan(&events, &endpoints, DateTime::UNIX_EPOCH);
        let (_, delivery) = planned.first().ok_or_else(|| anyhow::anyhow!("none"))?;
        assert_eq!(delivery.event_id, Uuid::from_u128(100));
        assert_eq!(delivery.workspace_id, Uuid::from_u128(1));
        let body: serde_json::Value = serde_json::from_str(&delivery.payload)?;
        assert_eq!(body["type"], "message.sent");
        Ok(())
    }
}
