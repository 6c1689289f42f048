//! Records the lanes' attempts in PostgreSQL, many per transaction: the attempt log, each
//! delivery's new state (delivered, due again after the retry schedule's wait, failed), and
//! each endpoint's health. An endpoint that answered 410 Gone, or to which every attempt has
//! failed for `disable_after_failing_hours`, is disabled, and the workspace's endpoints hear
//! of it (`webhook.disabled`).
//!
//! Until its batch is recorded an attempt lives only here: a replica that dies first leaves
//! the delivery pending, and it is sent again after its lease (at least once).

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection as _;
use domain::clock::Clock;
use domain::db::PgPool;
use domain::db::webhook_deliveries;
use domain::db::webhook_dispatch::{self, AttemptRecord};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::client::Answer;
use crate::events::Event;
use crate::fanout::plan;
use crate::lanes::{Dispatcher, Queued, label};

/// What a lane reports.
#[derive(Debug)]
pub enum Outcome {
    Attempted(Attempted),
    /// Queued but not attempted (the service is stopping): due again now.
    Released(Uuid),
}

/// One attempt, as recorded.
#[derive(Debug, Clone)]
pub struct Attempted {
    pub record: AttemptRecord,
    pub endpoint_id: Uuid,
    /// The endpoint answered 410 Gone: it wants no more.
    pub gone: bool,
    pub label: &'static str,
}

impl Attempted {
    pub fn of(
        queued: &Queued,
        attempted_at: DateTime<Utc>,
        latency: Duration,
        answer: Answer,
    ) -> Self {
        let label = label(&answer);
        let (status_code, error, response_body, succeeded, gone) = match answer {
            Answer::Status { status, body } => {
                let succeeded = (200..300).contains(&status);
                let error = (!succeeded).then(|| match status {
                    300..400 => format!("answered {status}; redirects are not followed"),
                    _ => format!("answered {status}"),
                });
                (
                    Some(i32::from(status)),
                    error,
                    Some(body),
                    succeeded,
                    status == 410,
                )
            }
            Answer::NoAnswer { error, .. } => (None, Some(error), None, false, false),
        };
        Attempted {
            record: AttemptRecord {
                id: Uuid::now_v7(),
                delivery_id: queued.delivery_id,
                attempted_at,
                status_code,
                latency_ms: i32::try_from(latency.as_millis()).unwrap_or(i32::MAX),
                error,
                response_body,
                succeeded,
            },
            endpoint_id: queued.target.endpoint_id,
            gone,
            label,
        }
    }
}

pub struct Recorder {
    pub pool: PgPool,
    pub clock: Arc<dyn Clock>,
    /// Weak: the recorder runs until the dispatcher (and its lanes) are gone.
    pub dispatcher: Weak<Dispatcher>,
    pub retry_schedule_seconds: Vec<i64>,
    pub disable_after: chrono::Duration,
    pub batch: usize,
    pub wait: Duration,
}

impl Recorder {
    /// Records until every lane has stopped (the channel closes) and all is written.
    pub async fn run(self, mut outcomes: mpsc::UnboundedReceiver<Outcome>) {
        let mut batch = Vec::with_capacity(self.batch);
        loop {
            let Some(first) = outcomes.recv().await else {
                break;
            };
            batch.push(first);
            let deadline = tokio::time::Instant::now() + self.wait;
            while batch.len() < self.batch {
                match tokio::time::timeout_at(deadline, outcomes.recv()).await {
                    Ok(Some(outcome)) => batch.push(outcome),
                    Ok(None) | Err(_) => break,
                }
            }
            let mut delay = Duration::from_millis(100);
            while let Err(error) = self.record(&batch).await {
                tracing::error!(
                    error = format!("{error:#}"),
                    "recording webhook attempts failed; retrying"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            batch.clear();
        }
    }

    async fn record(&self, batch: &[Outcome]) -> anyhow::Result<()> {
        let now = self.clock.now();
        let mut attempts = Vec::new();
        let mut released = Vec::new();
        let mut succeeded = HashSet::new();
        let mut failed = HashSet::new();
        let mut gone = HashSet::new();
        for outcome in batch {
            match outcome {
                Outcome::Attempted(a) => {
                    attempts.push(a.record.clone());
                    if a.record.succeeded {
                        succeeded.insert(a.endpoint_id);
                    } else {
                        failed.insert(a.endpoint_id);
                    }
                    if a.gone {
                        gone.insert(a.endpoint_id);
                    }
                }
                Outcome::Released(id) => released.push(*id),
            }
        }
        // One success in the batch says the endpoint works.
        let failing: Vec<Uuid> = failed.difference(&succeeded).copied().collect();
        let succeeded: Vec<Uuid> = succeeded.into_iter().collect();
        let schedule = &self.retry_schedule_seconds;
        let disable_before = now - self.disable_after;
        let hours = self.disable_after.num_hours();
        let mut conn = self.pool.get().await.context("database connection")?;
        let disabled = conn
            .transaction(async |tx| -> Result<_, diesel::result::Error> {
                {
                    webhook_dispatch::record_attempts(tx, &attempts, schedule, now).await?;
                    webhook_dispatch::release(tx, &released, now).await?;
                    webhook_dispatch::clear_failing(tx, &succeeded).await?;
                    let long_failing =
                        webhook_dispatch::mark_failing(tx, &failing, now, disable_before).await?;
                    let mut disabled = Vec::new();
                    for id in &gone {
                        let reason = "the endpoint answered 410 Gone";
                        if let Some(endpoint) = webhook_dispatch::disable(tx, *id, reason).await? {
                            disabled.push(endpoint);
                        }
                    }
                    for id in long_failing.iter().filter(|id| !gone.contains(id)) {
                        let reason = format!("every delivery failed for {hours} hours");
                        if let Some(endpoint) = webhook_dispatch::disable(tx, *id, &reason).await? {
                            disabled.push(endpoint);
                        }
                    }
                    for endpoint in &disabled {
                        webhook_deliveries::park_pending(tx, endpoint.id).await?;
                    }
                    if !disabled.is_empty() {
                        let events: Vec<Event> =
                            disabled.iter().map(|e| Event::disabled(e, now)).collect();
                        let workspaces: Vec<Uuid> =
                            disabled.iter().map(|e| e.workspace_id).collect();
                        let endpoints =
                            webhook_dispatch::enabled_endpoints(tx, &workspaces).await?;
                        let planned = plan(&events, &endpoints, now);
                        let deliveries: Vec<_> =
                            planned.into_iter().map(|(_, delivery)| delivery).collect();
                        webhook_dispatch::insert_deliveries(tx, &deliveries).await?;
                    }
                    Ok(disabled)
                }
            })
            .await?;
        for endpoint in disabled {
            tracing::warn!(webhook.id = %endpoint.id, workspace.id = %endpoint.workspace_id,
                           reason = endpoint.disabled_reason.as_deref().unwrap_or_default(),
                           "webhook endpoint disabled");
            metrics::counter!("webhook_endpoints_disabled_total").increment(1);
            if let Some(dispatcher) = self.dispatcher.upgrade() {
                dispatcher.disabled(endpoint.id);
            }
        }
        Ok(())
    }
}
