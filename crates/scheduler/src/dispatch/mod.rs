//! Dispatch: one round claims a batch of due enrollments (`FOR UPDATE SKIP LOCKED`, so any
//! number of replicas share the work without dispatching a step twice), plans them, reserves
//! mailbox capacity, and in the same transaction creates the messages, queues their send jobs
//! (`send_jobs`, published by [`Dispatcher::job_relay`]) and moves the enrollments on. Due retries go out the same way, without
//! another unit of the daily limit.

pub mod plan;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use domain::clock::Clock;
use domain::config::OutboxConfig;
use domain::db::PgPool;
use domain::db::dispatch::{self as queries, NewDispatch, Reservation};
use domain::db::send_jobs::{self, NewSendJob};
use domain::kafka::Producer;
use domain::outbox::JobRelay;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use self::plan::{Decision, Inputs, MailboxState, Plan};

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
    #[error(transparent)]
    Pool(#[from] domain::db::PoolError),
    #[error("a step or mailbox of this round was deleted while it was planned")]
    Gone,
}

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub claimed: usize,
    pub dispatched: usize,
    pub retried: usize,
    pub deferred: usize,
    pub finished: usize,
}

impl Report {
    /// Whether the round was full, so another should follow at once.
    fn busy(&self, batch_size: usize) -> bool {
        self.claimed >= batch_size || self.retried >= batch_size
    }
}

#[derive(Clone)]
pub struct Dispatcher {
    pool: PgPool,
    clock: Arc<dyn Clock>,
    batch_size: usize,
    jobs_topic: String,
}

impl Dispatcher {
    pub fn new(pool: PgPool, clock: Arc<dyn Clock>, batch_size: usize, jobs_topic: String) -> Self {
        Self {
            pool,
            clock,
            batch_size,
            jobs_topic,
        }
    }

    /// The relay publishing this dispatcher's jobs (the `send_jobs` outbox) to its topic.
    pub fn job_relay(&self, producer: Producer, config: &OutboxConfig) -> JobRelay {
        JobRelay::from_config(self.pool.clone(), producer, self.jobs_topic.clone(), config)
    }

    /// Rounds until shutdown: at once after a full round, after `idle` otherwise, and after a
    /// growing pause while the database fails.
    pub async fn run(self, idle: Duration, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            let pause = match self.run_once().await {
                Ok(report) => {
                    backoff = Duration::from_millis(100);
                    if report.busy(self.batch_size) {
                        continue;
                    }
                    idle
                }
                Err(error) => {
                    tracing::warn!(%error, "dispatch round failed; retrying");
                    metrics::counter!("scheduler_dispatch_errors_total").increment(1);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    backoff
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// One round of enrollments and one of due retries.
    pub async fn run_once(&self) -> Result<Report, DispatchError> {
        let now = self.clock.now();
        let mut report = self.dispatch_due(now).await?;
        report.retried = self.dispatch_retries(now).await?;
        metrics::counter!("scheduler_dispatched_total").increment(report.dispatched as u64);
        metrics::counter!("scheduler_retries_dispatched_total").increment(report.retried as u64);
        metrics::counter!("scheduler_deferred_total").increment(report.deferred as u64);
        metrics::counter!("scheduler_finished_total").increment(report.finished as u64);
        Ok(report)
    }

    async fn dispatch_due(&self, now: DateTime<Utc>) -> Result<Report, DispatchError> {
        let mut conn = self.pool.get().await?;
        // Capacity is reserved on a second connection, committed at once: the usage rows are
        // held for one short call, not for the whole dispatch transaction. A failed dispatch
        // gives its units back; a crash in between can only under-use a day, never exceed it.
        let mut side = self.pool.get().await?;
        let mut reserved: Vec<Reservation> = Vec::new();
        let outcome = conn
            .transaction(async |tx| -> Result<Report, DispatchError> {
                self.dispatch_in(tx, &mut side, now, &mut reserved).await
            })
            .await;
        if outcome.is_err() && !reserved.is_empty() {
            let (ids, days, units) = unzip_reservations(&reserved);
            if let Err(error) = queries::release(&mut side, &ids, &days, &units).await {
                tracing::error!(%error, "could not give back reserved capacity");
            }
        }
        outcome
    }

    async fn dispatch_in(
        &self,
        tx: &mut AsyncPgConnection,
        side: &mut AsyncPgConnection,
        now: DateTime<Utc>,
        reserved: &mut Vec<Reservation>,
    ) -> Result<Report, DispatchError> {
        let limit = i64::try_from(self.batch_size).unwrap_or(i64::MAX);
        let due = queries::claim_due(tx, now, limit).await?;
        let mut report = Report {
            claimed: due.len(),
            ..Report::default()
        };
        if due.is_empty() {
            return Ok(report);
        }

        let positions: HashMap<Uuid, i32> = due.iter().map(|e| (e.id, e.current_step)).collect();
        let sequence_ids: Vec<Uuid> = unique(due.iter().map(|e| e.sequence_id));
        let mut steps: HashMap<Uuid, Vec<domain::db::steps::Step>> = HashMap::new();
        for step in domain::db::steps::live_for(tx, &sequence_ids).await? {
            steps.entry(step.sequence_id).or_default().push(step);
        }
        let mut suppressed = HashSet::new();
        let mut by_workspace: HashMap<Uuid, Vec<String>> = HashMap::new();
        for e in &due {
            by_workspace
                .entry(e.workspace_id)
                .or_default()
                .push(e.email.clone());
        }
        for (workspace_id, emails) in by_workspace {
            for email in
                domain::db::suppressions::suppressed_among(tx, workspace_id, &emails).await?
            {
                suppressed.insert((workspace_id, email));
            }
        }
        let mut pools: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
        for member in queries::pools(tx, &sequence_ids).await? {
            pools
                .entry(member.sequence_id)
                .or_default()
                .push(member.mailbox_id);
        }
        let mailbox_ids: Vec<Uuid> = unique(
            pools
                .values()
                .flatten()
                .copied()
                .chain(due.iter().filter_map(|e| e.mailbox_id)),
        );
        let mailboxes = self.mailbox_states(tx, &mailbox_ids, now).await?;

        let Plan { decisions, asks } = plan::plan(
            &Inputs {
                now,
                steps: &steps,
                suppressed: &suppressed,
                pools: &pools,
                mailboxes: &mailboxes,
            },
            &due,
            &mut rand::rng(),
        );

        let requests: Vec<Reservation> = asks
            .iter()
            .filter_map(|(mailbox_id, ask)| {
                let state = mailboxes.get(mailbox_id)?;
                Some(Reservation {
                    mailbox_id: *mailbox_id,
                    day: state.day,
                    want: ask.want,
                    limit: state.limit,
                    next_slot: ask.next_slot,
                })
            })
            .collect();
        let mut granted: HashMap<Uuid, i32> = HashMap::new();
        for grant in queries::reserve(side, &requests, now).await? {
            granted.insert(grant.mailbox_id, grant.granted);
        }
        reserved.extend(requests.iter().map(|r| Reservation {
            want: granted.get(&r.mailbox_id).copied().unwrap_or(0),
            ..*r
        }));

        let mut sends = Vec::new();
        let (mut defer_ids, mut defer_until) = (Vec::new(), Vec::new());
        let (mut finish_ids, mut finish_status, mut finish_reason) =
            (Vec::new(), Vec::new(), Vec::new());
        for decision in decisions {
            match decision {
                Decision::Send(send) => {
                    // A concurrent dispatcher took the units this round counted on: due again
                    // at once, the next round plans it with fresh usage.
                    let left = granted.entry(send.mailbox_id).or_default();
                    if *left > 0 {
                        *left -= 1;
                        sends.push(send);
                    } else {
                        defer_ids.push(send.enrollment_id);
                        defer_until.push(now);
                    }
                }
                Decision::Defer {
                    enrollment_id,
                    until,
                } => {
                    defer_ids.push(enrollment_id);
                    defer_until.push(until);
                }
                Decision::Complete { enrollment_id } => {
                    finish_ids.push(enrollment_id);
                    finish_status.push("completed");
                    finish_reason.push(None);
                }
                Decision::Stop {
                    enrollment_id,
                    status,
                    reason,
                } => {
                    finish_ids.push(enrollment_id);
                    finish_status.push(status);
                    finish_reason.push(Some(reason));
                }
            }
        }

        let new_messages: Vec<NewDispatch> = sends
            .iter()
            .map(|send| {
                let message_id = Uuid::now_v7();
                let domain_part = mailboxes
                    .get(&send.mailbox_id)
                    .and_then(|m| m.mailbox.email.rsplit_once('@'))
                    .map_or("localhost", |(_, domain)| domain);
                NewDispatch {
                    message_id,
                    workspace_id: send.workspace_id,
                    enrollment_id: send.enrollment_id,
                    step_id: send.step_id,
                    step_order: send.step_order,
                    contact_id: send.contact_id,
                    mailbox_id: send.mailbox_id,
                    variant_index: send.variant_index,
                    message_id_header: format!("<{message_id}@{domain_part}>"),
                }
            })
            .collect();
        let step_ids = unique(new_messages.iter().map(|m| m.step_id));
        let mailbox_ids = unique(new_messages.iter().map(|m| m.mailbox_id));
        let found = queries::lock_references(tx, &step_ids, &mailbox_ids).await?;
        if usize::try_from(found).ok() != Some(step_ids.len() + mailbox_ids.len()) {
            // Deleted since the round read it: what a failed key check did, the round is
            // rolled back (its capacity given back) and the next one plans without it.
            return Err(DispatchError::Gone);
        }
        let queued: HashMap<Uuid, queries::Queued> =
            queries::insert_messages(tx, &new_messages, now)
                .await?
                .into_iter()
                .map(|q| (q.enrollment_id, q))
                .collect();
        let mut jobs = Vec::with_capacity(queued.len());
        let mut unused: HashMap<Uuid, i32> = HashMap::new();
        for message in &new_messages {
            if let Some(q) = queued.get(&message.enrollment_id) {
                jobs.push(NewSendJob {
                    message_id: q.id,
                    workspace_id: message.workspace_id,
                    enrollment_id: message.enrollment_id,
                    mailbox_id: message.mailbox_id,
                    attempt: q.attempts,
                });
            } else {
                // The step already has its message (from an earlier dispatch): it is not
                // sent twice, and its unit goes back.
                *unused.entry(message.mailbox_id).or_default() += 1;
            }
        }
        send_jobs::insert_many(tx, &jobs).await?;
        let (moved_ids, moved_steps): (Vec<Uuid>, Vec<i32>) = sends
            .iter()
            .filter(|send| positions.get(&send.enrollment_id) != Some(&send.step_order))
            .map(|send| (send.enrollment_id, send.step_order))
            .unzip();
        queries::set_positions(tx, &moved_ids, &moved_steps).await?;
        queries::defer(tx, &defer_ids, &defer_until).await?;
        queries::finish(tx, &finish_ids, &finish_status, &finish_reason, now).await?;
        if !unused.is_empty() {
            let giving_back: Vec<Reservation> = reserved
                .iter()
                .filter_map(|r| {
                    unused
                        .get(&r.mailbox_id)
                        .map(|n| Reservation { want: *n, ..*r })
                })
                .collect();
            let (ids, days, units) = unzip_reservations(&giving_back);
            queries::release(side, &ids, &days, &units).await?;
            for r in reserved.iter_mut() {
                r.want -= unused.get(&r.mailbox_id).copied().unwrap_or(0);
            }
        }

        report.dispatched = jobs.len();
        report.deferred = defer_ids.len();
        report.finished = finish_ids.len();
        Ok(report)
    }

    async fn mailbox_states(
        &self,
        tx: &mut AsyncPgConnection,
        ids: &[Uuid],
        now: DateTime<Utc>,
    ) -> Result<HashMap<Uuid, MailboxState>, DispatchError> {
        // Each mailbox's zone and local day are worked out once, then its usage of that day read.
        let mut states: HashMap<Uuid, MailboxState> = queries::mailboxes(tx, ids)
            .await?
            .into_iter()
            .map(|m| (m.id, MailboxState::new(m, now, 0)))
            .collect();
        let (ids, days): (Vec<Uuid>, Vec<NaiveDate>) =
            states.values().map(|m| (m.mailbox.id, m.day)).unzip();
        for usage in queries::usage(tx, &ids, &days).await? {
            if let Some(state) = states.get_mut(&usage.mailbox_id) {
                state.used = usage.reserved;
            }
        }
        Ok(states)
    }

    async fn dispatch_retries(&self, now: DateTime<Utc>) -> Result<usize, DispatchError> {
        let mut conn = self.pool.get().await?;
        let limit = i64::try_from(self.batch_size).unwrap_or(i64::MAX);
        conn.transaction(async |tx| -> Result<usize, DispatchError> {
            let due = queries::requeue_due_retries(tx, now, limit).await?;
            let jobs: Vec<NewSendJob> = due
                .iter()
                .map(|retry| NewSendJob {
                    message_id: retry.id,
                    workspace_id: retry.workspace_id,
                    enrollment_id: retry.enrollment_id,
                    mailbox_id: retry.mailbox_id,
                    attempt: retry.attempts,
                })
                .collect();
            send_jobs::insert_many(tx, &jobs).await?;
            Ok(due.len())
        })
        .await
    }
}

fn unique(ids: impl Iterator<Item = Uuid>) -> Vec<Uuid> {
    ids.collect::<HashSet<_>>().into_iter().collect()
}

fn unzip_reservations(reservations: &[Reservation]) -> (Vec<Uuid>, Vec<NaiveDate>, Vec<i32>) {
    let kept = reservations.iter().filter(|r| r.want > 0);
    (
        kept.clone().map(|r| r.mailbox_id).collect(),
        kept.clone().map(|r| r.day).collect(),
        kept.map(|r| r.want).collect(),
    )
}
