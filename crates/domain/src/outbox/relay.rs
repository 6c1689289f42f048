//! The relay: one round is one transaction that claims a batch of pending rows, sends them
//! all at once, marks the acknowledged ones published and counts an attempt on the others.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use futures::future::join_all;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing::field::Empty;

use super::backoff::Backoff;
use crate::config::OutboxConfig;
use crate::db::outbox::{self, OutboxRecord};
use crate::db::{PgPool, PoolError};
use crate::kafka::Producer;
use crate::kafka::producer::{Delivered, ProduceError};

/// Pause after a first failed round, doubling up to [`BACKOFF_MAX`] while rounds fail.
const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often `outbox_pending` is refreshed: a count per round would walk the pending index
/// every poll interval on every replica, which is most expensive exactly during a backlog.
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);
/// How often rows kept past `outbox.retention_seconds` are purged, and how many per statement.
const PURGE_INTERVAL: Duration = Duration::from_secs(30);
const PURGE_BATCH: i64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("could not get a database connection: {0}")]
    Pool(#[from] PoolError),
    #[error("outbox query failed: {0}")]
    Query(#[from] diesel::result::Error),
    /// The round committed, but some records were not acknowledged: they stay pending with
    /// the attempt counted, and a later round sends them again.
    #[error("{failed} of {claimed} outbox records were not published: {first_error}")]
    Publish {
        claimed: usize,
        published: usize,
        failed: usize,
        first_error: String,
    },
}

/// Publishes the outbox until shut down. Cheap to run on every replica of a service.
pub struct OutboxRelay {
    pool: PgPool,
    producer: Producer,
    batch_size: u32,
    poll_interval: Duration,
    /// Zero: an acknowledged row is deleted in the round's transaction; otherwise it is
    /// marked published and purged once older than this.
    retention: Duration,
    backoff: Backoff,
}

/// What one round did (of this relay or the job relay).
#[derive(Debug, Default)]
pub(super) struct Round {
    pub(super) claimed: usize,
    pub(super) published: usize,
    pub(super) failed: usize,
    pub(super) first_error: Option<String>,
}

impl Round {
    /// The published count, or the failures as an error (after the round committed).
    pub(super) fn into_result(self) -> Result<usize, RelayError> {
        match self.first_error {
            None => Ok(self.published),
            Some(first_error) => Err(RelayError::Publish {
                claimed: self.claimed,
                published: self.published,
                failed: self.failed,
                first_error,
            }),
        }
    }
}

/// The pause before a relay's next round, `None` for at once (a full batch: more is
/// probably waiting). `what` names the records in the warnings.
pub(super) fn pause_after(
    round: Result<Round, RelayError>,
    backoff: &mut Backoff,
    batch_size: u32,
    poll_interval: Duration,
    what: &str,
) -> Option<Duration> {
    match round {
        // Nothing got through: Kafka is down or unreachable, give it time.
        Ok(round) if round.failed > 0 && round.published == 0 => {
            let pause = backoff.next_delay();
            tracing::warn!(
                error = round.first_error.as_deref().unwrap_or_default(),
                outbox.failed = round.failed,
                retry_in_ms = pause.as_millis() as u64,
                "{what} not published; they stay pending",
            );
            Some(pause)
        }
        // Kafka works. Records that failed anyway (one partition unavailable, a record the
        // broker refuses) must not hold back the ones behind them, so they are logged, stay
        // pending, and come first in the next round.
        Ok(round) => {
            backoff.reset();
            if round.failed > 0 {
                tracing::warn!(
                    error = round.first_error.as_deref().unwrap_or_default(),
                    outbox.claimed = round.claimed,
                    outbox.failed = round.failed,
                    "some {what} not published; they stay pending",
                );
            }
            (round.claimed < batch_size as usize).then_some(poll_interval)
        }
        Err(error) => {
            let pause = backoff.next_delay();
            tracing::warn!(
                error = format!("{error:#}"),
                retry_in_ms = pause.as_millis() as u64,
                "relay round failed ({what})",
            );
            Some(pause)
        }
    }
}

impl OutboxRelay {
    /// `batch_size` rows at most per round (one transaction); `poll_interval` is the pause
    /// after a round that drained what was pending.
    pub fn new(pool: PgPool, producer: Producer, batch_size: u32, poll_interval: Duration) -> Self {
        Self {
            pool,
            producer,
            batch_size: batch_size.max(1),
            poll_interval,
            retention: Duration::ZERO,
            backoff: Backoff::new(BACKOFF_INITIAL, BACKOFF_MAX),
        }
    }

    /// With `outbox.batch_size`, `outbox.poll_interval_ms` and `outbox.retention_seconds`.
    pub fn from_config(pool: PgPool, producer: Producer, config: &OutboxConfig) -> Self {
        Self::new(
            pool,
            producer,
            config.batch_size,
            Duration::from_millis(config.poll_interval_ms),
        )
        .with_retention(Duration::from_secs(config.retention_seconds))
    }

    /// Keeps published rows this long instead of deleting them when acknowledged.
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Replaces the backoff after failed rounds (100 ms doubling to 5 s by default).
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = Backoff::new(initial, max);
        self
    }

    /// Runs rounds until `shutdown` is cancelled. A round in flight is finished rather than
    /// abandoned (at most the producer's message timeout), so its deliveries get recorded.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = self.backoff;
        let mut gauge_due = Instant::now();
        let mut purge_due = Instant::now();
        tracing::info!(
            outbox.batch_size = self.batch_size,
            poll_interval_ms = self.poll_interval.as_millis() as u64,
            retention_seconds = self.retention.as_secs(),
            "outbox relay started"
        );
        while !shutdown.is_cancelled() {
            if Instant::now() >= gauge_due {
                self.refresh_pending_gauge().await;
                gauge_due = Instant::now() + GAUGE_INTERVAL;
            }
            if Instant::now() >= purge_due {
                if let Err(error) = self.purge().await {
                    tracing::warn!(error = format!("{error:#}"), "outbox purge failed");
                }
                purge_due = Instant::now() + PURGE_INTERVAL;
            }
            let Some(pause) = pause_after(
                self.round().await,
                &mut backoff,
                self.batch_size,
                self.poll_interval,
                "outbox records",
            ) else {
                continue;
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(pause) => {}
            }
        }
        tracing::info!("outbox relay stopped");
    }

    /// One round; returns how many rows it published. Records Kafka did not acknowledge are
    /// an error, after the round committed what was published and the failed attempts.
    pub async fn run_once(&self) -> Result<usize, RelayError> {
        self.round().await?.into_result()
    }

    async fn round(&self) -> Result<Round, RelayError> {
        let mut conn = self.pool.get().await?;
        let limit = i64::from(self.batch_size);
        conn.transaction(async |tx| -> Result<Round, RelayError> {
            let records = outbox::claim_pending(tx, limit).await?;
            if records.is_empty() {
                return Ok(Round::default());
            }
            let span = tracing::info_span!(
                "outbox.publish",
                outbox.claimed = records.len(),
                outbox.published = Empty,
                outbox.failed = Empty,
            );
            self.publish(tx, &records).instrument(span).await
        })
        .await
    }

    async fn publish(
        &self,
        tx: &mut AsyncPgConnection,
        records: &[OutboxRecord],
    ) -> Result<Round, RelayError> {
        // All sends are queued before any is awaited: the producer batches them, and records
        // of one key, queued in id order, stay in that order on their partition.
        let results = join_all(records.iter().map(|record| self.send(record))).await;
        let mut delivered = Vec::with_capacity(records.len());
        let mut failures: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        let now = Utc::now();
        for (record, result) in records.iter().zip(results) {
            match result {
                Ok(_) => {
                    delivered.push(record.id);
                    // How late jobs go out: near the poll interval normally, the length of
                    // the outage after one.
                    let delay = (now - record.created_at).to_std().unwrap_or_default();
                    metrics::histogram!("outbox_publish_delay_seconds").record(delay.as_secs_f64());
                }
                Err(error) => failures
                    .entry(error.to_string())
                    .or_default()
                    .push(record.id),
            }
        }
        let published = if self.retention.is_zero() {
            outbox::delete_published(tx, &delivered).await?
        } else {
            outbox::mark_published(tx, &delivered).await?
        };
        // One statement per distinct error; during an outage that is one for the batch.
        for (error, ids) in &failures {
            outbox::record_failure(tx, ids, error).await?;
        }
        let failed = records.len() - delivered.len();
        metrics::counter!("outbox_published_total").increment(published as u64);
        metrics::counter!("outbox_publish_errors_total").increment(failed as u64);
        let span = tracing::Span::current();
        span.record("outbox.published", published);
        span.record("outbox.failed", failed);
        Ok(Round {
            claimed: records.len(),
            published,
            failed,
            first_error: failures.into_keys().next(),
        })
    }

    async fn send(&self, record: &OutboxRecord) -> Result<Delivered, ProduceError> {
        let payload = serde_json::to_vec(&record.payload)?;
        self.producer
            .send_bytes_with_headers(
                &record.topic,
                record.message_key.as_deref(),
                &payload,
                &record.header_pairs(),
            )
            .await
    }

    /// Deletes published rows older than the retention, in statements of [`PURGE_BATCH`]
    /// rows (each its own transaction, so none holds many locks), until none is left; also
    /// clears rows a release that kept every published row left behind. Returns how many.
    pub async fn purge(&self) -> Result<usize, RelayError> {
        let mut conn = self.pool.get().await?;
        let retention = chrono::Duration::from_std(self.retention).unwrap_or(chrono::Duration::MAX);
        let cutoff = Utc::now()
            .checked_sub_signed(retention)
            .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
        let mut purged = 0;
        loop {
            let deleted = outbox::purge_published(&mut conn, cutoff, PURGE_BATCH).await?;
            purged += deleted;
            metrics::counter!("outbox_purged_total").increment(deleted as u64);
            if deleted < PURGE_BATCH as usize {
                return Ok(purged);
            }
        }
    }

    async fn refresh_pending_gauge(&self) {
        let count = match self.pool.get().await {
            Ok(mut conn) => outbox::count_pending(&mut conn)
                .await
                .map_err(RelayError::from),
            Err(error) => Err(error.into()),
        };
        match count {
            Ok(pending) => metrics::gauge!("outbox_pending").set(pending as f64),
            Err(error) => tracing::debug!(%error, "could not count pending outbox rows"),
        }
    }
}
