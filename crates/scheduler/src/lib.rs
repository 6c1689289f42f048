//! Decides what is due and dispatches send jobs. The single owner of enrollment state and the
//! clock of the system: it dispatches due steps (several loops per replica, any number of
//! replicas), relays the outbox to `email-jobs`, and applies `email-events` and
//! `email-retries`, announcing what it recorded on `webhook-events`.

pub mod dispatch;
pub mod outcomes;
pub mod reputation;
pub mod retries;
pub mod timing;
pub mod webhook_events;
pub mod window;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use domain::clock::{Clock, SystemClock};
use domain::config::Config;
use domain::kafka::{ConsumerOptions, Producer, run_batch_consumer, run_consumer};
use domain::outbox::OutboxRelay;
use domain::service::ServiceBase;
use domain::service::admin::{admin_server, bind, run_until_cancelled};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::dispatch::Dispatcher;
use crate::outcomes::EventHandler;
use crate::retries::RetryHandler;
use crate::webhook_events::Webhooks;

pub struct Application {
    base: ServiceBase,
    admin: Server,
    admin_port: u16,
    clock: Arc<dyn Clock>,
}

impl Application {
    /// Binds `scheduler.admin_bind` (port 0 picks a free port, as tests do).
    pub fn build(config: Config) -> anyhow::Result<Self> {
        let listener = bind(config.scheduler.admin_bind, "scheduler.admin_bind")?;
        Self::build_with(config, listener, Arc::new(SystemClock))
    }

    /// With the admin listener and the clock chosen by the caller (tests control time).
    pub fn build_with(
        config: Config,
        admin_listener: TcpListener,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let base = ServiceBase::new(config)?;
        let admin_port = admin_listener.local_addr()?.port();
        let admin = admin_server(&base, admin_listener)?;
        Ok(Self {
            base,
            admin,
            admin_port,
            clock,
        })
    }

    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let config = &self.base.config;
        let settings = &config.scheduler;
        let topics = self.base.topics.clone();
        let topic_creation = self.base.spawn_topic_creation(shutdown.clone());
        let mut tasks = JoinSet::new();

        let dispatcher = Dispatcher::new(
            self.base.pool.clone(),
            self.clock.clone(),
            settings.batch_size as usize,
            topics.email_jobs.clone(),
        );
        let idle = Duration::from_millis(settings.poll_interval_ms);
        // A round holds two connections; the two relays and the two consumers need one each.
        let affordable = config.database.max_connections.saturating_sub(4) / 2;
        let loops = (settings.dispatch_concurrency as usize).min(affordable.max(1));
        if loops < settings.dispatch_concurrency as usize {
            tracing::warn!(
                configured = settings.dispatch_concurrency,
                running = loops,
                "database.max_connections is too small for scheduler.dispatch_concurrency; \
                 running fewer dispatch loops"
            );
        }
        for _ in 0..loops {
            tasks.spawn(dispatcher.clone().run(idle, shutdown.clone()));
        }

        let relay = OutboxRelay::from_config(
            self.base.pool.clone(),
            Producer::new(&config.kafka)?,
            &config.outbox,
        );
        tasks.spawn(relay.run(shutdown.clone()));
        // The dispatcher's jobs have their own narrow outbox and relay.
        let job_relay = dispatcher.job_relay(Producer::new(&config.kafka)?, &config.outbox);
        tasks.spawn(job_relay.run(shutdown.clone()));

        let kafka = config.kafka.clone();
        let events = EventHandler::new(
            self.base.pool.clone(),
            reputation::Guard {
                topic: topics.mailbox_events.clone(),
            },
            Webhooks {
                topic: topics.webhook_events.clone(),
            },
        );
        let events_shutdown = shutdown.clone();
        let events_topic = topics.email_events.clone();
        tasks.spawn(async move {
            let options = ConsumerOptions::new("scheduler-email-events", vec![events_topic]);
            let batching = crate::outcomes::BATCHING;
            if let Err(error) =
                run_batch_consumer(&kafka, options, batching, events, events_shutdown).await
            {
                tracing::error!(%error, "email-events consumer stopped");
            }
        });

        let kafka = config.kafka.clone();
        let backoff = settings
            .retry_backoff_seconds
            .iter()
            .map(|s| Duration::from_secs(*s))
            .collect();
        let retries = RetryHandler::new(
            self.base.pool.clone(),
            backoff,
            Webhooks {
                topic: topics.webhook_events.clone(),
            },
        );
        let retries_shutdown = shutdown.clone();
        let retries_topic = topics.email_retries.clone();
        tasks.spawn(async move {
            let options = ConsumerOptions::new("scheduler-email-retries", vec![retries_topic]);
            if let Err(error) = run_consumer(&kafka, options, retries, retries_shutdown).await {
                tracing::error!(%error, "email-retries consumer stopped");
            }
        });

        tracing::info!(
            admin_port = self.admin_port,
            dispatch_loops = loops,
            "scheduler running"
        );
        run_until_cancelled(self.admin, shutdown.clone()).await?;
        // In-flight rounds finish their transaction; the grace period bounds the wait.
        let grace = Duration::from_secs(config.shutdown.grace_period_seconds);
        if tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} })
            .await
            .is_err()
        {
            tracing::warn!("work still running after the grace period; stopping anyway");
            tasks.abort_all();
        }
        topic_creation.abort();
        tracing::info!("scheduler stopped");
        Ok(())
    }
}

/// The binary's serve command.
pub async fn serve(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    Application::build(config)?
        .run_until_stopped(shutdown)
        .await
}
