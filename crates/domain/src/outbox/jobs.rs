//! The job relay: publishes the send jobs' outbox (`send_jobs`, see [`crate::db::send_jobs`])
//! to `email-jobs`. One round is one transaction that takes a batch of jobs by deleting them,
//! sends them all at once, puts back those Kafka did not acknowledge, and commits.
//!
//! The same guarantees as the outbox relay: at least once (a commit lost after delivery puts
//! the jobs back, and they go again with the same envelope ids; the worker's claim makes a
//! second copy harmless), none skipped, none dropped, any number of relays.

use std::time::{Duration, Instant};

use chrono::Utc;
use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use futures::future::join_all;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::relay::{RelayError, Round, pause_after};
use crate::config::OutboxConfig;
use crate::db::PgPool;
use crate::db::send_jobs::{self, SendJobRow};
use crate::kafka::Producer;
use crate::kafka::producer::{Delivered, ProduceError};

const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often the `send_jobs_pending` gauge is refreshed (not every round: a count per round
/// would walk the table every poll interval on every replica, dearest during a backlog).
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);

/// Publishes `send_jobs` to one topic until shut down.
pub struct JobRelay {
    pool: PgPool,
    producer: Producer,
    topic: String,
    batch_size: u32,
    poll_interval: Duration,
    backoff: Backoff,
}

impl JobRelay {
    /// `batch_size` jobs at most per round; `poll_interval` is the pause after a round that
    /// drained what was waiting.
    pub fn new(
        pool: PgPool,
        producer: Producer,
        topic: impl Into<String>,
        batch_size: u32,
        poll_interval: Duration,
    ) -> Self {
        Self {
            pool,
            producer,
            topic: topic.into(),
            batch_size: batch_size.max(1),
            poll_interval,
            backoff: Backoff::new(BACKOFF_INITIAL, BACKOFF_MAX),
        }
    }

    /// With `outbox.batch_size` and `outbox.poll_interval_ms` (published jobs are never kept).
    pub fn from_config(
        pool: PgPool,
        producer: Producer,
        topic: impl Into<String>,
        config: &OutboxConfig,
    ) -> Self {
        Self::new(
            pool,
            producer,
            topic,
            config.batch_size,
            Duration::from_millis(config.poll_interval_ms),
        )
    }

    /// Runs rounds until `shutdown` is cancelled; a round in flight is finished.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = self.backoff;
        tracing::info!(topic = %self.topic, batch_size = self.batch_size, "job relay started");
        let mut gauge_due = Instant::now();
        while !shutdown.is_cancelled() {
            if Instant::now() >= gauge_due {
                self.refresh_pending_gauge().await;
                gauge_due = Instant::now() + GAUGE_INTERVAL;
            }
            let Some(pause) = pause_after(
                self.round().await,
                &mut backoff,
                self.batch_size,
                self.poll_interval,
                "send jobs",
            ) else {
                continue;
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(pause) => {}
            }
        }
        tracing::info!("job relay stopped");
    }

    /// One round; returns how many jobs it published. Jobs Kafka did not acknowledge are an
    /// error, after the round put them back and committed.
    pub async fn run_once(&self) -> Result<usize, RelayError> {
        self.round().await?.into_result()
    }

    async fn round(&self) -> Result<Round, RelayError> {
        let mut conn = self.pool.get().await?;
        let limit = i64::from(self.batch_size);
        conn.transaction(async |tx| -> Result<Round, RelayError> {
            let jobs = send_jobs::take(tx, limit).await?;
            if jobs.is_empty() {
                return Ok(Round::default());
            }
            self.publish(tx, &jobs).await
        })
        .await
    }

    async fn publish(
        &self,
        tx: &mut AsyncPgConnection,
        jobs: &[SendJobRow],
    ) -> Result<Round, RelayError> {
        // All sends are queued before any is awaited, in id order: the producer batches
        // them, and one mailbox's jobs stay in order on its partition.
        let results = join_all(jobs.iter().map(|job| self.send(job))).await;
        let now = Utc::now();
        let mut failed: Vec<&SendJobRow> = Vec::new();
        let mut first_error = None;
        for (job, result) in jobs.iter().zip(results) {
            match result {
                Ok(_) => {
                    let delay = (now - job.created_at).to_std().unwrap_or_default();
                    metrics::histogram!("outbox_publish_delay_seconds").record(delay.as_secs_f64());
                }
                Err(error) => {
                    first_error.get_or_insert_with(|| error.to_string());
                    failed.push(job);
                }
            }
        }
        send_jobs::put_back(tx, &failed).await?;
        let published = jobs.len() - failed.len();
        metrics::counter!("outbox_published_total").increment(published as u64);
        metrics::counter!("outbox_publish_errors_total").increment(failed.len() as u64);
        Ok(Round {
            claimed: jobs.len(),
            published,
            failed: failed.len(),
            first_error,
        })
    }

    async fn refresh_pending_gauge(&self) {
        let count = match self.pool.get().await {
            Ok(mut conn) => send_jobs::count_pending(&mut conn)
                .await
                .map_err(RelayError::from),
            Err(error) => Err(error.into()),
        };
        match count {
            Ok(pending) => metrics::gauge!("send_jobs_pending").set(pending as f64),
            Err(error) => tracing::debug!(%error, "could not count pending send jobs"),
        }
    }

    async fn send(&self, job: &SendJobRow) -> Result<Delivered, ProduceError> {
        let payload = job.envelope().to_json()?;
        self.producer
            .send_bytes_with_headers(&self.topic, Some(&job.key()), &payload, &job.header_pairs())
            .await
    }
}
