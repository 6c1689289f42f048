//! Per-endpoint queues: each endpoint has `concurrency_per_endpoint` lanes, each a task that
//! sends one delivery at a time over its own kept-open connection. A slow or hanging
//! endpoint fills only its own lanes; every other endpoint's go on.
//!
//! A delivery goes to the lane of its order key (its enrollment), so one enrollment's
//! events reach an endpoint one after another in the order they were queued. A lane's
//! queue is bounded: what does not fit stays in PostgreSQL, leased, and a later poll
//! brings it back. A delivery whose lease would run out before its attempt could end is not
//! sent from memory (another replica may have it by then); its poll brings it back.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use domain::clock::Clock;
use domain::webhooks::sign;
use hyper::body::Bytes;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::client::{Answer, Client, Connection, Failure};
use crate::recorder::{Attempted, Outcome};
use crate::targets::Target;

/// One delivery waiting in a lane.
#[derive(Debug)]
pub struct Queued {
    pub delivery_id: Uuid,
    pub target: Arc<Target>,
    pub payload: Bytes,
    pub occurred_at: DateTime<Utc>,
    /// Until when this replica holds it.
    pub lease_until: DateTime<Utc>,
    pub order_key: Uuid,
}

/// A lane with nothing to send for this long closes, with its connection.
const IDLE_LANE: Duration = Duration::from_secs(300);

struct Lanes {
    senders: Vec<mpsc::Sender<Queued>>,
    /// Set when the platform disabled the endpoint: what waits in its lanes is dropped (it
    /// stays pending in PostgreSQL for when someone enables the endpoint again).
    disabled: Arc<AtomicBool>,
}

/// What the lanes share.
pub struct Dispatcher {
    lanes: Mutex<HashMap<Uuid, Lanes>>,
    client: Client,
    clock: Arc<dyn Clock>,
    outcomes: mpsc::UnboundedSender<Outcome>,
    concurrency: usize,
    lane_capacity: usize,
    timeout: Duration,
    shutdown: CancellationToken,
    tasks: tokio_util::task::TaskTracker,
    /// Woken when a lane's queue has drained to half: the poller brings more.
    room: Arc<Notify>,
    /// Woken when the fan-out handed back deliveries the lanes had no room for.
    refused: Notify,
}

impl Dispatcher {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        clock: Arc<dyn Clock>,
        outcomes: mpsc::UnboundedSender<Outcome>,
        concurrency: u32,
        queue_per_endpoint: u32,
        timeout: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        let concurrency = concurrency.max(1) as usize;
        Dispatcher {
            lanes: Mutex::new(HashMap::new()),
            client,
            clock,
            outcomes,
            concurrency,
            lane_capacity: (queue_per_endpoint as usize / concurrency).max(1),
            timeout,
            shutdown,
            tasks: tokio_util::task::TaskTracker::new(),
            room: Arc::new(Notify::new()),
            refused: Notify::new(),
        }
    }

    /// Queues `queued` in its endpoint's lane for its key. False when that lane is full (or
    /// the service is stopping): the caller releases it in PostgreSQL (due now), and a poll
    /// brings it back when the lanes have room.
    pub fn offer(&self, queued: Queued) -> bool {
        if self.shutdown.is_cancelled() {
            return false;
        }
        let Ok(mut all) = self.lanes.lock() else {
            return false;
        };
        let endpoint_id = queued.target.endpoint_id;
        let lanes = all
            .entry(endpoint_id)
            .or_insert_with(|| self.open_lanes(endpoint_id));
        // Offered from an enabled endpoint's row: it is enabled again.
        lanes.disabled.store(false, Ordering::Relaxed);
        let lane = lane_of(queued.order_key, lanes.senders.len());
        let queued = match lanes.senders[lane].try_send(queued) {
            Ok(()) => return counted(true),
            Err(TrySendError::Full(_)) => return false,
            // Its lanes closed for being idle: open them again.
            Err(TrySendError::Closed(queued)) => queued,
        };
        let lanes = self.open_lanes(endpoint_id);
        let sent = lanes.senders[lane].try_send(queued).is_ok();
        all.insert(endpoint_id, lanes);
        counted(sent)
    }

    /// Endpoints with less room in their lanes than one lane holds: a poll claims nothing
    /// for them (it would only be refused).
    pub fn busy_endpoints(&self) -> Vec<Uuid> {
        let Ok(all) = self.lanes.lock() else {
            return Vec::new();
        };
        all.iter()
            .filter(|(_, lanes)| {
                let room: usize = lanes.senders.iter().map(|s| s.capacity()).sum();
                room < self.lane_capacity
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Resolves once a lane has drained to half its queue since the last call.
    pub async fn room(&self) {
        self.room.notified().await;
    }

    /// Tells the poller that deliveries wait in PostgreSQL for room in the lanes.
    pub fn handed_back(&self) {
        self.refused.notify_one();
    }

    /// Resolves once deliveries were handed back since the last call.
    pub async fn backlog(&self) {
        self.refused.notified().await;
    }

    /// The platform disabled `endpoint_id`: its lanes drop what they hold.
    pub fn disabled(&self, endpoint_id: Uuid) {
        if let Ok(all) = self.lanes.lock()
            && let Some(lanes) = all.get(&endpoint_id)
        {
            lanes.disabled.store(true, Ordering::Relaxed);
        }
    }

    /// Closes every lane and waits for the attempts in flight; what was still queued is
    /// handed back to PostgreSQL (due now) through the recorder.
    pub async fn close(&self) {
        if let Ok(mut all) = self.lanes.lock() {
            all.clear();
        }
        self.tasks.close();
        self.tasks.wait().await;
    }

    fn open_lanes(&self, endpoint_id: Uuid) -> Lanes {
        let disabled = Arc::new(AtomicBool::new(false));
        let senders = (0..self.concurrency)
            .map(|_| {
                let (sender, receiver) = mpsc::channel(self.lane_capacity);
                let lane = Lane {
                    room: Arc::clone(&self.room),
                    half: self.lane_capacity / 2,
                    client: self.client.clone(),
                    clock: Arc::clone(&self.clock),
                    outcomes: self.outcomes.clone(),
                    disabled: Arc::clone(&disabled),
                    timeout: self.timeout,
                    connection: None,
                };
                self.tasks
                    .spawn(lane.run(receiver, self.shutdown.clone(), endpoint_id));
                sender
            })
            .collect();
        Lanes { senders, disabled }
    }
}

fn counted(queued: bool) -> bool {
    if queued {
        metrics::gauge!("webhook_deliveries_queued").increment(1.0);
    }
    queued
}

fn lane_of(key: Uuid, lanes: usize) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() % lanes.max(1) as u64) as usize
}

struct Lane {
    room: Arc<Notify>,
    /// The queue length at which the lane says it has room.
    half: usize,
    client: Client,
    clock: Arc<dyn Clock>,
    outcomes: mpsc::UnboundedSender<Outcome>,
    disabled: Arc<AtomicBool>,
    timeout: Duration,
    connection: Option<Connection>,
}

impl Lane {
    async fn run(
        mut self,
        mut queue: mpsc::Receiver<Queued>,
        shutdown: CancellationToken,
        endpoint_id: Uuid,
    ) {
        loop {
            let queued = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                queued = tokio::time::timeout(IDLE_LANE, queue.recv()) => match queued {
                    Ok(Some(queued)) => queued,
                    Ok(None) => break,
                    Err(_) => {
                        // Idle: close (and its connection with it). What was offered in
                        // between is still sent; the next offer opens new lanes.
                        queue.close();
                        while let Some(queued) = queue.recv().await {
                            metrics::gauge!("webhook_deliveries_queued").decrement(1.0);
                            self.send_if_held(queued).await;
                        }
                        return;
                    }
                },
            };
            metrics::gauge!("webhook_deliveries_queued").decrement(1.0);
            if queue.len() == self.half {
                self.room.notify_one();
            }
            self.send_if_held(queued).await;
        }
        // Stopping: hand what is still queued back, due now, rather than after its lease.
        queue.close();
        while let Some(queued) = queue.recv().await {
            metrics::gauge!("webhook_deliveries_queued").decrement(1.0);
            let _ = self.outcomes.send(Outcome::Released(queued.delivery_id));
        }
        tracing::debug!(webhook.id = %endpoint_id, "webhook lane closed");
    }

    /// Sends `queued` unless its endpoint was disabled or its lease could run out during
    /// the attempt (then another replica may have it by now; a poll brings it back).
    async fn send_if_held(&mut self, queued: Queued) {
        if self.disabled.load(Ordering::Relaxed) {
            return;
        }
        let margin = chrono::Duration::from_std(self.timeout).unwrap_or_default();
        if self.clock.now() + margin >= queued.lease_until {
            metrics::counter!("webhook_lease_lapsed_total").increment(1);
            return;
        }
        self.send(queued).await;
    }

    async fn send(&mut self, queued: Queued) {
        let attempted_at = self.clock.now();
        let signature = sign(
            &queued.target.secrets(attempted_at),
            &message_id(queued.delivery_id),
            attempted_at.timestamp(),
            &queued.payload,
        );
        let started = Instant::now();
        let answer = self
            .client
            .attempt(
                &mut self.connection,
                &queued.target.url,
                &signature,
                queued.payload.clone(),
            )
            .await;
        let latency = started.elapsed();
        let outcome = Attempted::of(&queued, attempted_at, latency, answer);
        metrics::counter!("webhook_attempts_total", "outcome" => outcome.label).increment(1);
        metrics::histogram!("webhook_attempt_duration_seconds").record(latency.as_secs_f64());
        if outcome.record.succeeded {
            let delay = (self.clock.now() - queued.occurred_at).as_seconds_f64();
            metrics::histogram!("webhook_delivery_delay_seconds").record(delay.max(0.0));
        }
        let _ = self.outcomes.send(Outcome::Attempted(outcome));
    }
}

/// The `webhook-id` of a delivery: the same for every attempt, so receivers deduplicate.
pub fn message_id(delivery_id: Uuid) -> String {
    format!("msg_{}", delivery_id.simple())
}

/// The label of an attempt's outcome in `webhook_attempts_total`.
pub fn label(answer: &Answer) -> &'static str {
    match answer {
        Answer::Status { status, .. } if (200..300).contains(status) => "delivered",
        Answer::Status { status: 410, .. } => "gone",
        Answer::Status { .. } => "http_error",
        Answer::NoAnswer { kind, .. } => match kind {
            Failure::Refused => "refused",
            Failure::TimedOut => "timeout",
            Failure::Connection => "connection",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_always_takes_the_same_lane() {
        let key = Uuid::from_u128(42);
        let lane = lane_of(key, 8);
        assert!(lane < 8);
        assert!((0..10).all(|_| lane_of(key, 8) == lane));
        assert_eq!(lane_of(key, 1), 0);
    }

    #[test]
    fn the_message_id_is_the_delivery_s() {
        assert_eq!(
            message_id(Uuid::from_u128(1)),
            "msg_00000000000000000000000000000001"
        );
    }

    #[test]
    fn outcomes_are_labelled_by_what_the_endpoint_did() {
        let status = |status| Answer::Status {
            status,
            body: String::new(),
        };
        assert_eq!(label(&status(204)), "delivered");
        assert_eq!(label(&status(410)), "gone");
        assert_eq!(label(&status(302)), "http_error");
        assert_eq!(label(&status(500)), "http_error");
        let none = |kind| Answer::NoAnswer {
            error: String::new(),
            kind,
        };
        assert_eq!(label(&none(Failure::TimedOut)), "timeout");
        assert_eq!(label(&none(Failure::Refused)), "refused");
    }
}
