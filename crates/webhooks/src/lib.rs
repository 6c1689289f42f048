//! The webhooks service (binary `webhooks`, its own Deployment): delivers what the platform
//! recorded to the HTTPS endpoints workspaces registered, signed to the Standard Webhooks
//! specification, at least once, retried on a schedule, every attempt logged.
//!
//! - [`fanout`] reads `webhook-events` (the scheduler's recorded events) and `mailbox-events`,
//!   inserts one delivery per event and endpoint that wants it, and queues the new ones;
//! - [`lanes`] send them: per endpoint, `concurrency_per_endpoint` lanes with their own
//!   queue and kept-open connection ([`client`]), so one endpoint's slowness holds back
//!   only itself;
//! - [`recorder`] writes attempts and outcomes in batches, disables endpoints that answered
//!   410 Gone or failed for days, and announces it (`webhook.disabled`);
//! - [`poller`] brings back what is due in PostgreSQL: retries, lapsed leases, and the API's
//!   tests, retries and replays.
//!
//! Delivery state lives only in PostgreSQL (`webhook_deliveries`, `webhook_attempts`); a
//! delivery's `next_attempt_at` is also its lease, so replicas scale out and a replica that
//! dies leaves its deliveries to the others.
//!
//! Metrics: `webhook_attempts_total{outcome}` (delivered, http_error, gone, timeout,
//! connection, refused), `webhook_attempt_duration_seconds`, `webhook_delivery_delay_seconds`
//! (from the event to its delivery), `webhook_queue_oldest_due_seconds`,
//! `webhook_deliveries_queued`, `webhook_events_total`, `webhook_deliveries_created_total`,
//! `webhook_deliveries_polled_total`, `webhook_endpoints_disabled_total`,
//! `webhook_lease_lapsed_total`.

pub mod client;
pub mod events;
pub mod fanout;
pub mod lanes;
pub mod poller;
pub mod recorder;
pub mod targets;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use anyhow::Context as _;
use domain::clock::{Clock, SystemClock};
use domain::config::Config;
use domain::service::ServiceBase;
use domain::service::admin::{admin_server, bind, run_until_cancelled};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use fanout::{Fanout, Topics};
use lanes::Dispatcher;
use poller::Poller;
use recorder::Recorder;
use targets::Targets;

pub struct Application {
    base: ServiceBase,
    admin: Server,
    admin_port: u16,
    targets: Arc<Targets>,
    client: client::Client,
    clock: Arc<dyn Clock>,
}

impl Application {
    /// Binds `webhooks.admin_bind` (port 0 picks a free port, as tests do).
    pub fn build(config: Config) -> anyhow::Result<Self> {
        let listener = bind(config.webhooks.admin_bind, "webhooks.admin_bind")?;
        Self::build_with(config, listener)
    }

    pub fn build_with(config: Config, admin_listener: TcpListener) -> anyhow::Result<Self> {
        let cipher = config.security.cipher().context(
            "security.encryption_keys must be set to decrypt webhook signing secrets \
             (SEQ_SECURITY__ENCRYPTION_KEYS)",
        )?;
        let client = client::Client::new(
            config.security.outbound_guard(),
            Duration::from_millis(config.webhooks.request_timeout_ms),
        )?;
        let base = ServiceBase::new(config)?;
        let admin_port = admin_listener.local_addr()?.port();
        let admin = admin_server(&base, admin_listener)?;
        Ok(Self {
            base,
            admin,
            admin_port,
            targets: Arc::new(Targets::new(cipher)),
            client,
            clock: Arc::new(SystemClock),
        })
    }

    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let topics = self.base.spawn_topic_creation(shutdown.clone());
        let settings = &self.base.config.webhooks;
        let lease = chrono::Duration::seconds(i64::try_from(settings.lease_seconds)?);
        tracing::info!(admin_port = self.admin_port, "webhooks running");

        // The lanes stop after the readers, so what they were given is attempted or handed
        // back; the recorder stops after the lanes, so every attempt is written.
        let lanes_stop = CancellationToken::new();
        let (outcomes_tx, outcomes_rx) = mpsc::unbounded_channel();
        let dispatcher = Arc::new(Dispatcher::new(
            self.client.clone(),
            Arc::clone(&self.clock),
            outcomes_tx,
            settings.concurrency_per_endpoint,
            settings.queue_per_endpoint,
            Duration::from_millis(settings.request_timeout_ms),
            lanes_stop.clone(),
        ));
        let recorder = tokio::spawn(
            Recorder {
                pool: self.base.pool.clone(),
                clock: Arc::clone(&self.clock),
                dispatcher: Arc::downgrade(&dispatcher),
                retry_schedule_seconds: settings
                    .retry_schedule_seconds
                    .iter()
                    .map(|s| i64::try_from(*s).unwrap_or(i64::MAX))
                    .collect(),
                disable_after: chrono::Duration::hours(
                    i64::try_from(settings.disable_after_failing_hours).unwrap_or(i64::MAX / 4),
                ),
                batch: settings.record_batch as usize,
                wait: Duration::from_millis(settings.record_wait_ms),
            }
            .run(outcomes_rx),
        );
        let fanout = tokio::spawn(
            Fanout {
                pool: self.base.pool.clone(),
                kafka: self.base.config.kafka.clone(),
                topics: Topics {
                    webhook_events: self.base.topics.webhook_events.clone(),
                    mailbox_events: self.base.topics.mailbox_events.clone(),
                },
                clock: Arc::clone(&self.clock),
                dispatcher: Arc::clone(&dispatcher),
                targets: Arc::clone(&self.targets),
                lease,
                batch: settings.fanout_batch as usize,
                wait: Duration::from_millis(settings.fanout_wait_ms),
            }
            .run(shutdown.clone()),
        );
        let poller = tokio::spawn(
            Poller {
                pool: self.base.pool.clone(),
                clock: Arc::clone(&self.clock),
                dispatcher: Arc::clone(&dispatcher),
                targets: Arc::clone(&self.targets),
                lease,
                interval: Duration::from_millis(settings.poll_interval_ms),
                batch: settings.poll_batch,
            }
            .run(shutdown.clone()),
        );

        let served = run_until_cancelled(self.admin, shutdown).await;
        let consumed = fanout.await;
        let _ = poller.await;
        lanes_stop.cancel();
        dispatcher.close().await;
        // The recorder ends when the last sender of outcomes (the dispatcher's) is gone.
        drop(dispatcher);
        let _ = recorder.await;
        topics.abort();
        served?;
        consumed??;
        tracing::info!("webhooks stopped");
        Ok(())
    }
}

/// The binary's serve command.
pub async fn serve(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    Application::build(config)?
        .run_until_stopped(shutdown)
        .await
}
