//! The pipeline from `email-jobs` to SMTP and back to the database:
//!
//! - the **reader** takes records off Kafka while fewer than `max_in_flight` jobs are
//!   unfinished;
//! - the **claimer** batches jobs, claims their messages in one statement (a message already
//!   taken is skipped, a mailbox's spacing holds its next message back), and starts one
//!   send task per claimed message;
//! - the **recorder** writes outcomes in batches, then publishes their `sent` events and
//!   only once Kafka acknowledged them stores the jobs' offsets (while it records the next
//!   batches).
//!
//! At-least-once from Kafka, at-most-once to SMTP: whatever Kafka replays, only the claim
//! that moves a message out of `queued` leads to a send; a replayed job whose message is
//! `sent` announces it again, under the same envelope id ([`crate::announce`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::TimeDelta;
use domain::clock::Clock;
use domain::config::{KafkaConfig, WorkerServiceConfig};
use domain::crypto::SecretCipher;
use domain::db::PgPool;
use domain::db::sending::{self, ClaimedMessage, ThreadEmail, Unclaimed};
use domain::events::{EmailJob, SendJob};
use domain::kafka::consumer::stored_offsets_consumer;
use domain::kafka::{Envelope, Producer, TopicNames};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::announce::{Announcement, Announcer};
use crate::batch::Batch;
use crate::deliver::Delivery;
use crate::offsets::OffsetTracker;
use crate::outcome::{MessageFacts, Outcome};
use crate::prepare::{self, Verdict};
use crate::record::Recorder;

/// Consumer group of the sender workers (after the topic prefix).
pub const CONSUMER_GROUP: &str = "sender-worker";

/// Longest a job held back by its mailbox's spacing waits before its claim is tried again.
const MAX_HOLD: Duration = Duration::from_secs(30);
/// Outcomes written per recorder transaction at most.
const RECORD_BATCH: usize = 1000;
/// Longest the recorder waits for a batch to fill once its first outcome arrived. Outcomes
/// are still written before their offsets are stored; this only delays both a little.
const RECORD_WAIT: Duration = Duration::from_millis(25);

pub struct Worker {
    pub pool: PgPool,
    pub settings: WorkerServiceConfig,
    pub kafka: KafkaConfig,
    pub topics: TopicNames,
    /// Publishes the `sent` announcements (the outbox relay shares it).
    pub producer: Producer,
    pub worker_id: String,
    pub delivery: Arc<Delivery>,
    pub cipher: Arc<SecretCipher>,
    pub tracker_url: String,
    pub clock: Arc<dyn Clock>,
}

/// A job read from Kafka, holding its place among the unfinished ones.
struct Job {
    send: SendJob,
    partition: i32,
    offset: i64,
    _permit: OwnedSemaphorePermit,
}

/// A job that needs nothing more done, with the outcome to record when it had one.
struct Done {
    partition: i32,
    offset: i64,
    result: Option<(MessageFacts, Outcome)>,
    /// The `sent` of a message recorded before (a redelivered job), to publish again.
    again: Option<Announcement>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Done {
    fn of(job: Job, result: Option<(MessageFacts, Outcome)>) -> Self {
        Self {
            partition: job.partition,
            offset: job.offset,
            result,
            again: None,
            _permit: Some(job._permit),
        }
    }
}

impl Worker {
    /// Consumes until `shutdown`, then lets the sends in flight finish and records them.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> anyhow::Result<()> {
        let group = format!("{}{CONSUMER_GROUP}", self.kafka.topic_prefix);
        let consumer = Arc::new(stored_offsets_consumer(&self.kafka, &group)?);
        consumer.subscribe(&[self.topics.email_jobs.as_str()])?;
        tracing::info!(worker.id = %self.worker_id, kafka.group = %group, "sender worker consuming");

        let offsets = Arc::new(Mutex::new(OffsetTracker::default()));
        let (job_tx, job_rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let in_flight = Arc::new(Semaphore::new(self.settings.max_in_flight as usize));

        let reader = tokio::spawn(Arc::clone(&self).read(
            Arc::clone(&consumer),
            Arc::clone(&offsets),
            in_flight,
            job_tx,
            done_tx.clone(),
            shutdown.clone(),
        ));
        let claimer = tokio::spawn(Arc::clone(&self).claim_loop(job_rx, done_tx, shutdown.clone()));
        self.record_loop(&consumer, &offsets, done_rx, &shutdown)
            .await;
        reader.await?;
        claimer.await?;

        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(())
            | Err(rdkafka::error::KafkaError::ConsumerCommit(
                rdkafka::types::RDKafkaErrorCode::NoOffset,
            )) => {}
            Err(error) => tracing::warn!(%error, "final offset commit failed"),
        }
        tracing::info!("sender worker stopped consuming");
        Ok(())
    }

    async fn read(
        self: Arc<Self>,
        consumer: Arc<StreamConsumer>,
        offsets: Arc<Mutex<OffsetTracker>>,
        in_flight: Arc<Semaphore>,
        jobs: mpsc::UnboundedSender<Job>,
        done: mpsc::UnboundedSender<Done>,
        shutdown: CancellationToken,
    ) {
        loop {
            let permit = tokio::select! {
                () = shutdown.cancelled() => break,
                permit = Arc::clone(&in_flight).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let record = tokio::select! {
                () = shutdown.cancelled() => break,
                record = consumer.recv() => record,
            };
            let record = match record {
                Ok(record) => record,
                Err(error) => {
                    tracing::warn!(%error, "kafka receive failed");
                    metrics::counter!("kafka_consume_errors_total", "group" => CONSUMER_GROUP)
                        .increment(1);
                    continue;
                }
            };
            let (partition, offset) = (record.partition(), record.offset());
            if let Ok(mut offsets) = offsets.lock() {
                offsets.start(partition, offset);
            }
            match Envelope::<EmailJob>::from_json(record.payload().unwrap_or_default()) {
                Ok(envelope) => {
                    let EmailJob::Send(send) = envelope.body;
                    let job = Job {
                        send,
                        partition,
                        offset,
                        _permit: permit,
                    };
                    if jobs.send(job).is_err() {
                        break;
                    }
                }
                Err(error) => {
                    // Retrying cannot fix a record we cannot read; skip it loudly.
                    tracing::error!(%error, kafka.partition = partition, kafka.offset = offset,
                                    "unreadable email job skipped");
                    metrics::counter!("kafka_unreadable_records_total", "topic" => "email-jobs")
                        .increment(1);
                    let _ = done.send(Done {
                        partition,
                        offset,
                        result: None,
                        again: None,
                        _permit: Some(permit),
                    });
                }
            }
        }
    }

    async fn claim_loop(
        self: Arc<Self>,
        mut jobs: mpsc::UnboundedReceiver<Job>,
        done: mpsc::UnboundedSender<Done>,
        shutdown: CancellationToken,
    ) {
        // Jobs held back by spacing come back through here.
        let (later_tx, mut later) = mpsc::unbounded_channel::<Job>();
        let batch_size = self.settings.batch_size as usize;
        let batch_wait = Duration::from_millis(self.settings.batch_wait_ms);
        let mut open = true;
        while open {
            let first = tokio::select! {
                job = jobs.recv() => match job {
                    Some(job) => job,
                    None => break,
                },
                Some(job) = later.recv() => job,
            };
            let mut batch = vec![first];
            let deadline = Instant::now() + batch_wait;
            while batch.len() < batch_size {
                tokio::select! {
                    biased;
                    Some(job) = later.recv() => batch.push(job),
                    job = jobs.recv() => match job {
                        Some(job) => batch.push(job),
                        None => {
                            open = false;
                            break;
                        }
                    },
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
            self.claim_batch(batch, &done, &later_tx, &shutdown).await;
        }
    }

    /// Claims the messages of `batch`, starts a send for each claimed one and settles the
    /// rest.
    async fn claim_batch(
        self: &Arc<Self>,
        batch: Vec<Job>,
        done: &mpsc::UnboundedSender<Done>,
        later: &mpsc::UnboundedSender<Job>,
        shutdown: &CancellationToken,
    ) {
        let mut ids: Vec<Uuid> = batch.iter().map(|job| job.send.message_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut delay = Duration::from_millis(100);
        let (claimed, batch_parts, unclaimed, thread) = loop {
            match self.claim(&ids).await {
                Ok(found) => break found,
                Err(error) => {
                    // The jobs stay unfinished, so their offsets stay unstored: nothing is
                    // lost if this worker stops here.
                    tracing::warn!(error = format!("{error:#}"), "claiming messages failed");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        };

        let mut jobs_by_message: HashMap<Uuid, Vec<Job>> = HashMap::new();
        for job in batch {
            jobs_by_message
                .entry(job.send.message_id)
                .or_default()
                .push(job);
        }
        let now = self.clock.now();
        let context = prepare::Context {
            cipher: &self.cipher,
            tracker_url: &self.tracker_url,
            now,
        };
        for message in claimed {
            let Some(mut jobs) = jobs_by_message.remove(&message.id) else {
                continue;
            };
            // The same job twice in one batch: one send.
            let job = jobs.swap_remove(0);
            for duplicate in jobs {
                let _ = done.send(Done::of(duplicate, None));
            }
            let verdict = match batch_parts.shared(&message) {
                Some(shared) => {
                    let thread = thread_for(&message, batch_parts.threads(&message), &thread);
                    prepare::prepare(&message, shared, &thread, &context)
                }
                // Deleted since the claim (and the message with it, by cascade): not sent.
                None => Verdict::Skip(Outcome::Retry {
                    error: "its step, mailbox or sequence no longer exists".to_owned(),
                }),
            };
            let facts = prepare::facts(&message, batch_parts.mailbox_email(&message));
            let worker = Arc::clone(self);
            let done = done.clone();
            tokio::spawn(async move {
                let outcome = match verdict {
                    Verdict::Send(prepared) => {
                        worker.delivery.deliver(&prepared, worker.clock.now()).await
                    }
                    Verdict::Skip(outcome) => outcome,
                };
                let _ = done.send(Done::of(job, Some((facts, outcome))));
            });
        }
        for state in unclaimed {
            let Some(jobs) = jobs_by_message.remove(&state.id) else {
                continue;
            };
            if state.status == "queued" {
                self.hold(jobs, &state, later);
            } else if let Some(again) = Announcement::again(&state) {
                // Recorded `sent` by an attempt whose announcement may never have been
                // acknowledged (this job's offset was not stored): announced again, the same
                // record as the first. One announcement for all the jobs of the message.
                metrics::counter!("sent_announcements_repeated_total").increment(1);
                let mut again = match again {
                    Ok(again) => Some(again),
                    Err(error) => {
                        tracing::error!(%error, message.id = %state.id, "sent announcement not serialisable");
                        None
                    }
                };
                for job in jobs {
                    let mut finished = Done::of(job, None);
                    finished.again = again.take();
                    let _ = done.send(finished);
                }
            } else {
                // Sent, sending elsewhere, failed...: someone already has it.
                metrics::counter!("email_jobs_skipped_total").increment(jobs.len() as u64);
                for job in jobs {
                    let _ = done.send(Done::of(job, None));
                }
            }
        }
        // Messages that no longer exist (their enrollment was deleted).
        for job in jobs_by_message.into_values().flatten() {
            let _ = done.send(Done::of(job, None));
        }
    }

    /// Claims, then reads what the claimed messages share on the same connection (so it is
    /// at least as recent as the claim), the state of the others and the earlier emails of
    /// the threads.
    async fn claim(
        &self,
        ids: &[Uuid],
    ) -> anyhow::Result<(Vec<ClaimedMessage>, Batch, Vec<Unclaimed>, Vec<ThreadEmail>)> {
        let mut conn = self.pool.get().await?;
        let now = self.clock.now();
        let lease = TimeDelta::seconds(i64::try_from(self.settings.lease_seconds)?);
        let claimed = sending::claim(&mut conn, ids, &self.worker_id, now, now + lease).await?;
        let mut batch = Batch::new(sending::claim_context(&mut conn, &claimed).await?);
        let claimed_ids: HashSet<Uuid> = claimed.iter().map(|m| m.id).collect();
        let rest: Vec<Uuid> = ids
            .iter()
            .filter(|id| !claimed_ids.contains(id))
            .copied()
            .collect();
        let unclaimed = sending::unclaimed(&mut conn, &rest).await?;
        let threaded: Vec<Uuid> = claimed
            .iter()
            .filter(|m| batch.threads(m))
            .map(|m| m.enrollment_id)
            .collect();
        let thread = sending::thread_emails(&mut conn, &threaded).await?;
        batch.add_thread(&thread);
        Ok((claimed, batch, unclaimed, thread))
    }

    /// Hands `jobs` back to the claimer when the mailbox may send again.
    fn hold(&self, jobs: Vec<Job>, state: &Unclaimed, later: &mpsc::UnboundedSender<Job>) {
        let wait = state
            .next_allowed_at
            .and_then(|at| (at - self.clock.now()).to_std().ok())
            .unwrap_or(Duration::from_millis(500))
            .clamp(Duration::from_millis(20), MAX_HOLD);
        metrics::counter!("email_jobs_held_for_spacing_total").increment(jobs.len() as u64);
        let later = later.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            for job in jobs {
                let _ = later.send(job);
            }
        });
    }

    async fn record_loop(
        self: &Arc<Self>,
        consumer: &Arc<StreamConsumer>,
        offsets: &Arc<Mutex<OffsetTracker>>,
        mut done: mpsc::UnboundedReceiver<Done>,
        shutdown: &CancellationToken,
    ) {
        let recorder = Recorder::new(
            self.pool.clone(),
            self.worker_id.clone(),
            self.topics.clone(),
            Arc::clone(&self.clock),
        );
        let announcer = Announcer::new(self.producer.clone(), self.topics.email_events.clone());
        // The publications of recorded batches, awaited while the next ones are recorded.
        let mut publishing = JoinSet::new();
        while let Some(first) = done.recv().await {
            while publishing.try_join_next().is_some() {}
            // Waiting a little for more outcomes makes fewer, larger transactions: the
            // database's cost is mostly per statement, not per row.
            let mut batch = vec![first];
            let fill = tokio::time::sleep(RECORD_WAIT);
            tokio::pin!(fill);
            while batch.len() < RECORD_BATCH {
                match done.try_recv() {
                    Ok(next) => {
                        batch.push(next);
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                    Err(mpsc::error::TryRecvError::Empty) => {}
                }
                tokio::select! {
                    next = done.recv() => match next {
                        Some(next) => batch.push(next),
                        None => break,
                    },
                    () = &mut fill => break,
                }
            }
            let results: Vec<(MessageFacts, Outcome)> =
                batch.iter().filter_map(|d| d.result.clone()).collect();
            let mut delay = Duration::from_millis(100);
            // The emails went out: their outcome must be written, however long it takes.
            // Should the process die first, their leases run out and they become unknown.
            let mut recorded = loop {
                match recorder.record(&results).await {
                    Ok(recorded) => break recorded,
                    Err(error) => {
                        tracing::error!(
                            error = format!("{error:#}"),
                            "recording outcomes failed; retrying"
                        );
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            };
            let mut announcements = std::mem::take(&mut recorded.announcements);
            announcements.extend(batch.iter_mut().filter_map(|d| d.again.take()));
            if announcements.is_empty() {
                self.store_offsets(consumer, offsets, &batch);
                continue;
            }
            let worker = Arc::clone(self);
            let (consumer, offsets) = (Arc::clone(consumer), Arc::clone(offsets));
            let (announcer, stop) = (announcer.clone(), shutdown.clone());
            publishing.spawn(async move {
                // Unacknowledged (only when stopping): the offsets stay unstored and the
                // jobs come back to whoever reads their partitions next.
                if announcer.publish(&announcements, &stop).await {
                    worker.store_offsets(&consumer, &offsets, &batch);
                }
            });
        }
        while publishing.join_next().await.is_some() {}
    }

    /// Stores the offsets that `batch`, now done, lets move. Under the tracker's lock, so
    /// that batches finishing at once store their points in the order they were computed.
    fn store_offsets(
        &self,
        consumer: &StreamConsumer,
        offsets: &Mutex<OffsetTracker>,
        batch: &[Done],
    ) {
        let Ok(mut offsets) = offsets.lock() else {
            return;
        };
        let mut points: HashMap<i32, i64> = HashMap::new();
        for done in batch {
            if let Some(point) = offsets.finish(done.partition, done.offset) {
                points.insert(done.partition, point);
            }
        }
        metrics::gauge!("email_jobs_in_flight").set(offsets.in_flight() as f64);
        if points.is_empty() {
            return;
        }
        let mut list = TopicPartitionList::new();
        for (partition, point) in points {
            if let Err(error) =
                list.add_partition_offset(&self.topics.email_jobs, partition, Offset::Offset(point))
            {
                tracing::warn!(%error, "offset not stored");
            }
        }
        // Fails for a partition this consumer lost in a rebalance; its new owner replays
        // the jobs and the claim skips them.
        if let Err(error) = consumer.store_offsets(&list) {
            tracing::debug!(%error, "offsets not stored");
        }
    }
}

/// The thread emails of `message`'s enrollment, when its step `threads`.
fn thread_for(message: &ClaimedMessage, threads: bool, all: &[ThreadEmail]) -> Vec<ThreadEmail> {
    if !threads {
        return Vec::new();
    }
    all.iter()
        .filter(|e| e.enrollment_id == message.enrollment_id)
        .cloned()
        .collect()
}

/// Declares `unknown` the messages whose worker died mid-send, until `shutdown`.
pub async fn run_reaper(
    pool: PgPool,
    clock: Arc<dyn Clock>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    const LIMIT: i64 = 1000;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        loop {
            let expired = match pool.get().await {
                Ok(mut conn) => sending::expire_leases(&mut conn, clock.now(), LIMIT).await,
                Err(error) => {
                    tracing::warn!(%error, "lease check skipped: no database connection");
                    break;
                }
            };
            match expired {
                Ok(expired) => {
                    for message in &expired {
                        tracing::warn!(message.id = %message.id,
                                       worker.id = message.worker_id.as_deref().unwrap_or(""),
                                       "message left sending by a stopped worker is now unknown");
                    }
                    metrics::counter!("emails_total", "outcome" => "unknown")
                        .increment(expired.len() as u64);
                    if (expired.len() as i64) < LIMIT {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "lease check failed");
                    break;
                }
            }
        }
    }
}
