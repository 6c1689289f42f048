//! Brings due deliveries back into the lanes: retries whose wait is over, deliveries whose
//! lease lapsed (a replica died), those the lanes had no room for, and what the API asked
//! for (a test, a retry, a replay). Claims are `SKIP LOCKED`, so replicas share the work,
//! and skip the endpoints whose lanes are full: a backlog is claimed as the lanes drain,
//! woken by them, instead of being claimed and refused.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use domain::clock::Clock;
use domain::db::PgPool;
use domain::db::webhook_dispatch;
use hyper::body::Bytes;
use tokio_util::sync::CancellationToken;

use crate::fanout::release;
use crate::lanes::{Dispatcher, Queued};
use crate::targets::Targets;

pub struct Poller {
    pub pool: PgPool,
    pub clock: Arc<dyn Clock>,
    pub dispatcher: Arc<Dispatcher>,
    pub targets: Arc<Targets>,
    pub lease: chrono::Duration,
    pub interval: Duration,
    pub batch: u32,
}

/// What one look found.
#[derive(Debug, Default)]
struct Look {
    claimed: usize,
    /// Lanes were too full to take all that is due.
    backlog: bool,
}

impl Poller {
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let look = match self.poll().await {
                Ok(look) => look,
                Err(error) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "polling due webhook deliveries failed"
                    );
                    Look::default()
                }
            };
            if shutdown.is_cancelled() {
                break;
            }
            // A full batch: more may be due right away.
            if look.claimed >= self.batch as usize {
                continue;
            }
            if look.backlog {
                // Look again as soon as a lane has room.
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = self.dispatcher.room() => {}
                    () = tokio::time::sleep(self.interval) => {}
                }
            } else {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = self.dispatcher.backlog() => {}
                    () = tokio::time::sleep(self.interval) => {}
                }
            }
        }
    }

    async fn poll(&self) -> anyhow::Result<Look> {
        let now = self.clock.now();
        let mut conn = self.pool.get().await.context("database connection")?;
        let age = webhook_dispatch::oldest_due_age_seconds(&mut conn, now).await?;
        metrics::gauge!("webhook_queue_oldest_due_seconds").set(age);
        let lease_until = now + self.lease;
        let busy = self.dispatcher.busy_endpoints();
        let due =
            webhook_dispatch::claim_due(&mut conn, now, lease_until, i64::from(self.batch), &busy)
                .await?;
        // A busy endpoint may have deliveries due that this look passed over.
        let mut look = Look {
            claimed: due.len(),
            backlog: !busy.is_empty() && age > 0.0,
        };
        if due.is_empty() {
            return Ok(look);
        }
        let mut endpoint_ids: Vec<_> = due.iter().map(|d| d.endpoint_id).collect();
        endpoint_ids.sort_unstable();
        endpoint_ids.dedup();
        let endpoints = webhook_dispatch::enabled_endpoints_by_id(&mut conn, &endpoint_ids).await?;
        drop(conn);
        let targets: HashMap<_, _> = endpoints
            .iter()
            .filter_map(|e| Some((e.id, self.targets.of(e)?)))
            .collect();
        let mut refused = Vec::new();
        for delivery in due {
            let Some(target) = targets.get(&delivery.endpoint_id) else {
                continue;
            };
            let order_key = serde_json::from_str::<serde_json::Value>(&delivery.payload)
                .ok()
                .and_then(|body| body["data"]["enrollment_id"].as_str().map(str::to_owned))
                .and_then(|id| uuid::Uuid::parse_str(&id).ok())
                .unwrap_or(delivery.id);
            let id = delivery.id;
            let queued = self.dispatcher.offer(Queued {
                delivery_id: id,
                target: Arc::clone(target),
                payload: Bytes::from(delivery.payload),
                occurred_at: delivery.occurred_at,
                lease_until,
                order_key,
            });
            if !queued {
                refused.push(id);
            }
        }
        metrics::counter!("webhook_deliveries_polled_total").increment(look.claimed as u64);
        look.backlog |= !refused.is_empty();
        release(&self.pool, &refused, now).await;
        Ok(look)
    }
}
